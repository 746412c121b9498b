import CaravanCore
import CaravanEngine
import CaravanStorage
import CaravanWorkflow
import Foundation
import HTTPTypes
import Hummingbird

/// Query-string and resource helpers shared by the API routes.
enum APIRequest {
    /// `?limit=`: default 50, 1...500.
    static func limit(_ request: Request) throws -> Int {
        guard let text = request.uri.queryParameters.get("limit") else { return 50 }
        guard let value = Int(text), (1...500).contains(value) else {
            throw CaravanError.validation("/limit", "limit must be an integer from 1 to 500")
        }
        return value
    }

    /// `?cursor=`: an opaque token from a previous page.
    static func cursor(_ request: Request) throws -> String? {
        guard let text = request.uri.queryParameters.get("cursor"), !text.isEmpty else { return nil }
        guard let data = Data(base64Encoded: text), let value = String(data: data, encoding: .utf8), !value.isEmpty,
            value.utf8.count <= 200
        else { throw CaravanError.validation("/cursor", "cursor is not one this server gave out") }
        return value
    }

    /// `?cursor=` of the lists that page by a numeric position (the audit log, the request log).
    static func numericCursor(_ request: Request) throws -> Int64? {
        guard let cursor = try cursor(request) else { return nil }
        guard let position = Int64(cursor) else {
            throw CaravanError.validation("/cursor", "cursor is not one this server gave out")
        }
        return position
    }

    static func encodeCursor(_ value: String?) -> JSONValue {
        value.map { .string(Data($0.utf8).base64EncodedString()) } ?? .null
    }

    /// The answer of a list endpoint: `{items, next_cursor}`, where a full page's cursor names its last item (the
    /// next page starts after it) and a shorter page, the last, has none.
    static func page<Item>(
        _ items: [Item],
        limit: Int,
        cursor: (Item) -> String,
        json: (Item) -> JSONValue
    ) -> JSONValue {
        [
            "items": .array(items.map(json)),
            "next_cursor": encodeCursor(items.count == limit ? items.last.map(cursor) : nil),
        ]
    }

    /// `?wait=30s`: at most 60 s.
    static func wait(_ request: Request) throws -> Duration? {
        guard let text = request.uri.queryParameters.get("wait") else { return nil }
        guard let duration = CaravanDuration(parsing: text), duration.milliseconds <= 60_000 else {
            throw CaravanError.validation("/wait", "wait must be a duration of at most 60s, such as 500ms or 30s")
        }
        return duration.duration
    }

    static func time(_ milliseconds: Int64?) -> JSONValue {
        milliseconds.map { .string(Clock.rfc3339($0)) } ?? .null
    }

    static func json(_ failure: RunFailure?) -> JSONValue {
        guard let failure else { return .null }
        return [
            "code": .string(failure.code), "message": .string(failure.message),
            "step": failure.step.map(JSONValue.string) ?? .null,
        ]
    }

    /// The public form of a run.
    static func json(_ run: RunRecord) -> JSONValue {
        let agent = AgentStepKind.agentName(ofWorkflow: run.workflow)
        var result: JSONValue = [
            "id": .string(run.id),
            "kind": .string(agent == nil ? "workflow" : "agent"),
            "workflow": .string(run.workflow),
            "workflow_version": .int(Int64(run.workflowVersion)),
            "status": .string(run.status.rawValue),
            "input": agent == nil ? run.input : run.input["input"] ?? .null,
            "output": run.output ?? .null,
            "error": json(run.error),
            "parent_run_id": run.parentRunID.map(JSONValue.string) ?? .null,
            "created_at": time(run.createdAt),
            "started_at": time(run.startedAt),
            "finished_at": time(run.finishedAt),
            "steps": .array(
                run.steps.map { step in
                    [
                        "id": .string(step.id),
                        "status": .string(step.status.rawValue),
                        "attempts": .int(Int64(step.attempts)),
                        "output": step.output ?? .null,
                        "error": json(step.error),
                        "child_run_id": step.childRunID.map(JSONValue.string) ?? .null,
                        "started_at": time(step.startedAt),
                        "finished_at": time(step.finishedAt),
                    ]
                }
            ),
        ]
        if let agent, case .object(var fields) = result {
            // An agent's run: its agent and version, and the thread it ran on.
            fields["agent"] = .string(agent)
            fields["agent_version"] = .int(Int64(run.workflowVersion))
            fields["thread"] = run.input["thread"] ?? .null
            result = .object(fields)
        }
        return result
    }

    /// `json(run).canonicalText` as UTF-8, written straight from the run (keys in sorted order) rather than through
    /// dictionaries: every run start answers with its run.
    static func encoded(_ run: RunRecord) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + run.steps.count * 160)
        var first = true
        func key(_ name: String) {
            out.append(first ? UInt8(ascii: "{") : UInt8(ascii: ","))
            first = false
            JSONValue.writeString(name, to: &out)
            out.append(UInt8(ascii: ":"))
        }
        func string(_ value: String?) {
            if let value { JSONValue.writeString(value, to: &out) } else { out.append(contentsOf: "null".utf8) }
        }
        func time(_ milliseconds: Int64?) { string(milliseconds.map(Clock.rfc3339)) }
        let agent = AgentStepKind.agentName(ofWorkflow: run.workflow)
        if let agent {
            key("agent")
            string(agent)
            key("agent_version")
            out.append(contentsOf: String(run.workflowVersion).utf8)
        }
        key("created_at")
        time(run.createdAt)
        key("error")
        json(run.error).write(to: &out)
        key("finished_at")
        time(run.finishedAt)
        key("id")
        string(run.id)
        key("input")
        (agent == nil ? run.input : run.input["input"] ?? .null).write(to: &out)
        key("kind")
        string(agent == nil ? "workflow" : "agent")
        key("output")
        (run.output ?? .null).write(to: &out)
        key("parent_run_id")
        string(run.parentRunID)
        key("started_at")
        time(run.startedAt)
        key("status")
        string(run.status.rawValue)
        key("steps")
        out.append(UInt8(ascii: "["))
        for (index, step) in run.steps.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            first = true
            key("attempts")
            out.append(contentsOf: String(step.attempts).utf8)
            key("child_run_id")
            string(step.childRunID)
            key("error")
            json(step.error).write(to: &out)
            key("finished_at")
            time(step.finishedAt)
            key("id")
            string(step.id)
            key("output")
            (step.output ?? .null).write(to: &out)
            key("started_at")
            time(step.startedAt)
            key("status")
            string(step.status.rawValue)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        first = false
        if agent != nil {
            key("thread")
            (run.input["thread"] ?? .null).write(to: &out)
        }
        key("workflow")
        string(run.workflow)
        key("workflow_version")
        out.append(contentsOf: String(run.workflowVersion).utf8)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The public form of an event.
    static func json(_ event: RunEvent) -> JSONValue {
        [
            "seq": .int(event.seq),
            "run_id": .string(event.runID),
            "type": .string(event.type),
            "step": event.step.map(JSONValue.string) ?? .null,
            "at": time(event.at),
            "data": event.data ?? .null,
        ]
    }

    /// The public form of a workflow version.
    static func json(_ workflow: StoredWorkflow) -> JSONValue {
        [
            "name": .string(workflow.name),
            "version": .int(Int64(workflow.version)),
            "latest_version": .int(Int64(workflow.latestVersion)),
            "description": workflow.definition.description.map(JSONValue.string) ?? .null,
            "definition": workflow.definition.source,
            "archived": .bool(workflow.archivedAt != nil),
            "created_at": time(workflow.createdAt),
            "updated_at": time(workflow.updatedAt),
        ]
    }
}
