import CaravanAgents
import CaravanCore
import CaravanIdentity
import CaravanModels
import HTTPTypes
import Hummingbird
import NIOCore

/// `/v1/responses`: OpenAI's Responses API over the same gateway as chat completions (routing, limits, metering),
/// with `previous_response_id` continuing a stored conversation. A streamed response sends its events once the
/// model has answered (each item's content in one delta), so that a failure answers with its own status.
struct ResponsesRoutes {
    let gateway: ModelGateway
    let store: ResponseStore
    let models: ModelRoutes
    let bodies: RequestBodyReader

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .post,
                "/v1/responses",
                operationID: "createResponse",
                summary:
                    "OpenAI's Responses API (text, function tools, structured output, `stream`, `previous_response_id`), routed and metered.",
                tag: "models",
                access: .organization(.write),
                requestSchema: object,
                responses: [200: ("A response, or a text/event-stream of its events", object, "application/json")],
                audited: false
            )
        ) { request, context in
            try await respond(request, context)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/responses/{id}",
                operationID: "getResponse",
                summary: "A stored response.",
                tag: "models",
                access: .organization(.read),
                responses: [200: ("The response", object, "application/json")]
            )
        ) { _, context in
            let id = try context.parameters.require("id")
            guard let response = try await store.get(orgID: try context.organizationID(), id: id) else {
                throw CaravanError.notFound("The response '\(id)'")
            }
            return .json(response)
        }
    }

    private func respond(_ request: Request, _ context: CaravanRequestContext) async throws -> Response {
        let orgID = try context.organizationID()
        let body = try await bodies.json(of: request)
        let (chat, options): (ChatRequest, ResponsesWireFormat.Options)
        do {
            (chat, options) = try ResponsesWireFormat.decodeRequest(body)
        } catch {
            throw CaravanError(
                .invalidRequest,
                "The request is not a valid response request: \(error.description)",
                fieldErrors: [.init(pointer: error.pointer, detail: error.detail)]
            )
        }
        try models.refuseInternalImages(chat.messages)
        // This turn's messages, kept for a later turn; instructions (system messages) are each request's own, not
        // carried over, as OpenAI's are not.
        let turn = chat.messages.filter { $0.role != .system }
        var full = chat
        if let previous = options.previousResponseID {
            guard let history = try await store.conversation(orgID: orgID, through: previous) else {
                let detail = "No stored response '\(previous)' (a response made with store: false is not kept)."
                throw CaravanError(
                    .notFound,
                    detail,
                    fieldErrors: [.init(pointer: "/previous_response_id", detail: detail)]
                )
            }
            full.messages = chat.messages.filter { $0.role == .system } + history + turn
        }
        let route = try await models.route(of: full, fallbacks: nil, orgID: orgID)
        var callContext = ModelRoutes.callContext(orgID: orgID, context)
        callContext.cacheable = request.headers[.cacheControl]?.contains("no-cache") != true
        let answer: ModelAnswer
        do {
            answer = try await gateway.complete(full, route: route, context: callContext)
        } catch {
            throw ModelRoutes.apiError(error)
        }
        let now = gateway.clock.nowMilliseconds()
        let suffix = String(Identifier.make("r", milliseconds: now).dropFirst(2))
        let id = "resp_" + suffix
        let completed = ResponsesWireFormat.response(
            id: id,
            model: answer.ref.description,
            createdAt: now / 1000,
            status: "completed",
            output: ResponsesWireFormat.outputItems(answer.response, id: suffix),
            usage: answer.response.usage,
            request: chat,
            options: options
        )
        if options.store {
            try await store.save(
                orgID: orgID,
                id: id,
                previousID: options.previousResponseID,
                messages: turn + [answer.response.message],
                response: completed,
                at: now
            )
        }
        guard options.stream else { return .json(completed) }
        var started = completed.objectValue ?? [:]
        started["status"] = "in_progress"
        started["output"] = []
        started["usage"] = .null
        var events: [(type: String, data: JSONValue)] = [
            ("response.created", ["type": "response.created", "sequence_number": 0, "response": .object(started)]),
            (
                "response.in_progress",
                ["type": "response.in_progress", "sequence_number": 1, "response": .object(started)]
            ),
        ]
        events += ResponsesWireFormat.events(of: answer.response, completed: completed, id: suffix, from: 2)
        var text = ""
        for event in events {
            text += "event: \(event.type)\ndata: "
            event.data.write(to: &text)
            text += "\n\n"
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text))
        )
    }
}
