public import CaravanCore

/// A workflow: a named graph of steps, validated. `source` is the normalised definition, stored as the
/// version's text and compared to tell whether a `PUT` changed anything.
public struct WorkflowDefinition: Sendable, Equatable {
    public var name: String
    public var description: String?
    public var inputSchema: JSONValue?
    public var defaultTimeout: CaravanDuration?
    public var defaultRetry: RetryPolicy?
    public var concurrency: Int?
    public var schedule: Schedule?
    public var steps: [StepDefinition]
    public var output: JSONValue?
    public var source: JSONValue

    /// A cron schedule that starts runs.
    public struct Schedule: Sendable, Equatable {
        public var cron: CronExpression
        public var timeZone: String
        public var input: JSONValue
        /// What to do about ticks missed while every node was down: start one run (`true`) or skip them.
        public var catchUp: Bool
    }

    /// The step with `id`.
    public func step(_ id: String) -> StepDefinition? { steps.first { $0.id == id } }

    /// The timeout of `step`: its own, else the workflow's default, else 30 s.
    public func timeout(for step: StepDefinition) -> CaravanDuration {
        step.timeout ?? defaultTimeout ?? .seconds(30)
    }

    /// The retry policy of `step`: its own, else the workflow's default, else `RetryPolicy.default`.
    public func retry(for step: StepDefinition) -> RetryPolicy {
        step.retry ?? defaultRetry ?? .default
    }
}

/// One step of a workflow.
public struct StepDefinition: Sendable, Equatable {
    public var id: String
    public var needs: [String]
    public var when: Expression?
    public var forEach: Expression?
    public var timeout: CaravanDuration?
    public var retry: RetryPolicy?
    /// The kind: `http`, `template`, `approval`, `sleep`, `workflow`, …
    public var kind: String
    /// The value under the kind's key.
    public var config: JSONValue
    /// Whether `{{ }}` in `config` is rendered over the run before the step runs (see `StepKind.interpolatesConfig`).
    public var interpolatesConfig: Bool = true
}
