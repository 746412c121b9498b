public import CaravanCore
public import CaravanWorkflow
public import Logging

/// What a step executor knows about the attempt it runs.
public struct StepContext: Sendable {
    public var orgID: String
    public var runID: String
    public var workflow: String
    /// The run's input.
    public var input: JSONValue
    public var stepID: String
    /// 1 for the first attempt.
    public var attempt: Int
    /// The same for every attempt of this step in this run: send it to services that deduplicate.
    public var idempotencyKey: String
    public var timeout: CaravanDuration
    /// The largest output the step may produce, in bytes of JSON.
    public var maxOutputBytes: Int
    public var logger: Logger
    /// For kinds that keep a journal (`keepsJournal`): what earlier attempts recorded, and where to record more.
    public var journal: StepJournal?
    /// Masks the values of the secrets this attempt was given, in every form they may come back in: apply it to
    /// anything the step records or reports (an audit entry, an error message) that may quote the request.
    public var redactor = SecretRedactor(values: [])
    /// What the step may ask of the engine for its run; `nil` outside an engine.
    public var runs: RunControl?
    /// The run's scope (`input`, `steps`, `run`) for kinds that read it (`readsRunScope`); `null` for the others.
    public var scope: JSONValue = .null
}

/// Where a run's steps find the secrets they send out (`{{ secrets.NAME }}`), and how each use is recorded.
public protocol SecretResolver: Sendable {
    /// The values of `names` in the organization (a name without a secret is absent), for one step attempt.
    func resolve(names: Set<String>, for context: StepContext) async throws -> [String: String]
    /// Which of `names` exist in the organization (no value is read or recorded as used).
    func existing(names: Set<String>, orgID: String) async throws -> Set<String>
    /// The hosts each of `names` may be sent to, for those restricted to some (`SecretHostRule`).
    func allowedHosts(names: Set<String>, orgID: String) async throws -> [String: [String]]
}

/// A kind of step that runs as one call: adding a kind is one type conforming to this protocol (validation from
/// `StepKind`, execution here) and registering an instance with the engine.
public protocol StepExecutor: StepKind {
    /// Runs one attempt.
    /// - Parameters:
    ///   - config: the step's configuration with `{{ }}` already rendered (secrets included: never store it).
    ///   - context: ids, attempt number, timeout, limits.
    /// - Returns: the step's output.
    /// - Throws: `Failure`; cancellation when the run is cancelled or the timeout passes.
    func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue

    /// Whether the step finishes at once without I/O (a template): the engine then runs it inline, without a
    /// task or a timeout of its own.
    static var isInstant: Bool { get }

    /// Whether the step records progress inside an attempt (`StepContext.journal`): several model or tool calls
    /// in one step, each committed before the next, none repeated after a crash.
    static var keepsJournal: Bool { get }

    /// Whether the step renders templates of its own over the run's scope (`StepContext.scope`): the engine builds
    /// the scope for these kinds only.
    static var readsRunScope: Bool { get }
}

extension StepExecutor {
    public static var isInstant: Bool { false }
    public static var keepsJournal: Bool { false }
    public static var readsRunScope: Bool { false }
}

/// `template`: the rendered value is the output.
public struct TemplateStep: StepExecutor {
    public static let name = TemplateStepKind.name
    public static let isInstant = true
    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        TemplateStepKind.validate(config, at: pointer)
    }

    public init() {}

    public func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue {
        config
    }
}
