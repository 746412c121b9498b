public import CaravanCore
public import CaravanEngine

/// What a delivery says: the JSON body of a `standard` webhook, and the short message of a `slack` or `email` one.
public enum WebhookPayload {
    /// The body: `{type, timestamp, data: {run_id, workflow | agent, parent_run_id, event: {...}}}`, the type being
    /// the one the webhook subscribed to (an alias such as `approval.requested`, or the event's own).
    public static func body(for feed: FeedEvent, type: String) -> JSONValue {
        let event = feed.event
        var data: [String: JSONValue] = [
            "run_id": .string(event.runID),
            "event": [
                "id": .string(String(event.globalID)), "seq": .int(event.seq), "type": .string(event.type),
                "step": event.step.map(JSONValue.string) ?? .null, "at": .string(Clock.rfc3339(event.at)),
                "data": event.data ?? .null,
            ],
            "parent_run_id": feed.parentRunID.map(JSONValue.string) ?? .null,
        ]
        if feed.workflow.hasPrefix("agent:") {
            data["agent"] = .string(String(feed.workflow.dropFirst(6)))
        } else {
            data["workflow"] = .string(feed.workflow)
        }
        return ["type": .string(type), "timestamp": .string(Clock.rfc3339(event.at)), "data": .object(data)]
    }

    /// The scope a webhook's filter is evaluated over: `{type, event: {type, step, data, seq}, run: {id, workflow,
    /// agent}}`.
    static func filterScope(for feed: FeedEvent, type: String) -> JSONValue {
        let isAgent = feed.workflow.hasPrefix("agent:")
        return [
            "type": .string(type),
            "event": [
                "type": .string(feed.event.type), "step": feed.event.step.map(JSONValue.string) ?? .null,
                "data": feed.event.data ?? .null, "seq": .int(feed.event.seq),
            ],
            "run": [
                "id": .string(feed.event.runID), "workflow": isAgent ? .null : .string(feed.workflow),
                "agent": isAgent ? .string(String(feed.workflow.dropFirst(6))) : .null,
            ],
        ]
    }

    /// A message for people (Slack, email) from a delivery's body: a title and one or two lines of text.
    public static func message(from body: JSONValue) -> (title: String, text: String) {
        let type = body["type"]?.stringValue ?? "event"
        let data = body["data"] ?? .null
        let runID = data["run_id"]?.stringValue ?? "?"
        let subject =
            data["agent"]?.stringValue.map { "agent \($0)" } ?? "workflow \(data["workflow"]?.stringValue ?? "?")"
        let event = data["event"] ?? .null
        let step = event["step"]?.stringValue
        let error = event["data"]?["error"]?["message"]?.stringValue
        let title: String
        var lines: [String] = []
        switch type {
        case "approval.requested":
            title = "Approval needed: \(subject)"
            lines.append("Run \(runID) waits for an approval\(step.map { " at step \($0)" } ?? "").")
            if let message = event["data"]?["message"]?.stringValue { lines.append(message) }
            lines.append(
                "Answer in the console's inbox, or with POST /v1/runs/\(runID)/signals/approve {\"approved\": true}."
            )
        case "run.succeeded":
            title = "Run succeeded: \(subject)"
            lines.append("Run \(runID) succeeded.")
        case "run.failed":
            title = "Run failed: \(subject)"
            lines.append("Run \(runID) failed\(error.map { ": \($0)" } ?? ".")")
        case "step.failed":
            title = "Step failed: \(subject)"
            lines.append("Step \(step ?? "?") of run \(runID) failed\(error.map { ": \($0)" } ?? ".")")
        case "budget.exceeded":
            title = "Budget exceeded: \(subject)"
            lines.append(
                "Run \(runID) stopped: the organization's model budget is spent\(error.map { " (\($0))" } ?? ".")"
            )
        default:
            title = "\(type): \(subject)"
            lines.append("Run \(runID)\(step.map { ", step \($0)" } ?? ""): \(type).")
        }
        return (String(title.prefix(200)), String(lines.joined(separator: "\n").prefix(4000)))
    }
}
