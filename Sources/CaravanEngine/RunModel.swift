public import CaravanCore

/// A run's status, as the API reports it.
public enum RunStatus: String, Sendable, Codable, CaseIterable {
    case queued, running, waiting, succeeded, failed, cancelled

    /// Whether the run has ended.
    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// A step's status, as the API reports it.
public enum StepStatus: String, Sendable, Codable {
    case pending, running, waiting, succeeded, failed, skipped, cancelled

    /// Whether the step has ended.
    public var isTerminal: Bool {
        self == .succeeded || self == .failed || self == .skipped || self == .cancelled
    }
}

/// Why a step or a run failed: a stable code, a message, and the step at fault.
public struct RunFailure: Sendable, Hashable {
    public var code: String
    public var message: String
    public var step: String?

    public init(code: String, message: String, step: String? = nil) {
        self.code = code
        self.message = message
        self.step = step
    }

    var json: JSONValue {
        var object: [String: JSONValue] = ["code": .string(code), "message": .string(message)]
        if let step { object["step"] = .string(step) }
        return .object(object)
    }

    init?(json: JSONValue?) {
        guard let json, let code = json["code"]?.stringValue else { return nil }
        self.init(code: code, message: json["message"]?.stringValue ?? "", step: json["step"]?.stringValue)
    }
}

/// The state of one step inside a run.
public struct StepState: Sendable, Hashable {
    public var id: String
    public var status: StepStatus
    public var attempts: Int
    public var output: JSONValue?
    public var error: RunFailure?
    public var startedAt: Int64?
    public var finishedAt: Int64?
    /// When a waiting step (a sleep, a retry's backoff) next needs attention.
    public var wakeAt: Int64?
    /// For a `workflow` step: the child run.
    public var childRunID: String?

    public init(id: String) {
        self.id = id
        self.status = .pending
        self.attempts = 0
    }

    var json: JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(id), "status": .string(status.rawValue), "attempts": .int(Int64(attempts)),
        ]
        if let output { object["output"] = output }
        if let error { object["error"] = error.json }
        if let startedAt { object["started_at"] = .int(startedAt) }
        if let finishedAt { object["finished_at"] = .int(finishedAt) }
        if let wakeAt { object["wake_at"] = .int(wakeAt) }
        if let childRunID { object["child_run_id"] = .string(childRunID) }
        return .object(object)
    }

    init(json: JSONValue) throws {
        guard let id = json["id"]?.stringValue, let status = json["status"]?.stringValue.flatMap(StepStatus.init)
        else { throw CaravanError(.internal, "A stored step is malformed.") }
        self.id = id
        self.status = status
        if case .int(let attempts)? = json["attempts"] { self.attempts = Int(attempts) } else { self.attempts = 0 }
        self.output = json["output"]
        self.error = RunFailure(json: json["error"])
        if case .int(let value)? = json["started_at"] { startedAt = value }
        if case .int(let value)? = json["finished_at"] { finishedAt = value }
        if case .int(let value)? = json["wake_at"] { wakeAt = value }
        childRunID = json["child_run_id"]?.stringValue
    }
}

/// Steps stored inline in the run row, as a JSON array.
enum StepList {
    static func encode(_ steps: [StepState]) -> JSONValue { .array(steps.map(\.json)) }

    /// The canonical text of `encode(steps)`, written straight from the steps (keys in sorted order) rather than
    /// through a dictionary per step: every commit of a run writes its whole list.
    static func text(_ steps: [StepState]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(steps.count * 96)
        out.append(UInt8(ascii: "["))
        for (index, step) in steps.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"attempts":"#.utf8)
            out.append(contentsOf: String(step.attempts).utf8)
            func field(_ key: String, _ write: (inout [UInt8]) -> Void) {
                out.append(UInt8(ascii: ","))
                JSONValue.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                write(&out)
            }
            if let child = step.childRunID { field("child_run_id") { JSONValue.writeString(child, to: &$0) } }
            if let error = step.error { field("error") { error.json.write(to: &$0) } }
            if let finished = step.finishedAt { field("finished_at") { $0.append(contentsOf: String(finished).utf8) } }
            field("id") { JSONValue.writeString(step.id, to: &$0) }
            if let output = step.output { field("output") { output.write(to: &$0) } }
            if let started = step.startedAt { field("started_at") { $0.append(contentsOf: String(started).utf8) } }
            field("status") { JSONValue.writeString(step.status.rawValue, to: &$0) }
            if let wake = step.wakeAt { field("wake_at") { $0.append(contentsOf: String(wake).utf8) } }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ json: JSONValue?) throws -> [StepState] {
        try (json?.arrayValue ?? []).map(StepState.init(json:))
    }
}

/// A run: an execution of one version of a workflow (or an agent), and the projection of its events.
public struct RunRecord: Sendable {
    public var id: String
    public var orgID: String
    public var kind: String
    public var workflow: String
    public var workflowVersion: Int
    public var status: RunStatus
    public var input: JSONValue
    public var output: JSONValue?
    public var error: RunFailure?
    public var steps: [StepState]
    public var idempotencyKey: String?
    public var requestHash: String?
    public var parentRunID: String?
    public var parentStep: String?
    public var createdAt: Int64
    public var startedAt: Int64?
    public var finishedAt: Int64?
    public var updatedAt: Int64
    public var lastSeq: Int64
    public var cancelRequested: Bool

    /// The step with `id`.
    public func step(_ id: String) -> StepState? { steps.first { $0.id == id } }
}

/// One entry of a run's history.
public struct RunEvent: Sendable, Hashable {
    /// The organization-wide position, for `GET /v1/events`; 0 until stored.
    public var globalID: Int64
    public var runID: String
    public var seq: Int64
    public var type: String
    public var step: String?
    public var at: Int64
    public var data: JSONValue?

    public init(runID: String, seq: Int64, type: String, step: String? = nil, at: Int64, data: JSONValue? = nil) {
        self.globalID = 0
        self.runID = runID
        self.seq = seq
        self.type = type
        self.step = step
        self.at = at
        self.data = data
    }
}

/// When listed runs were created: from `from` (inclusive) to `to` (exclusive), Unix milliseconds; either open.
public struct CreatedRange: Sendable, Hashable {
    public var from: Int64?
    public var to: Int64?

    public init(from: Int64? = nil, to: Int64? = nil) {
        self.from = from
        self.to = to
    }
}
