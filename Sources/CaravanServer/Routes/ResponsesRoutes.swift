import CaravanAgents
import CaravanCore
import CaravanIdentity
import CaravanModels
import HTTPTypes
import Hummingbird
import NIOCore

/// `/v1/responses`: OpenAI's Responses API over the same gateway as chat completions (routing, limits, metering),
/// with `previous_response_id` continuing a stored conversation. A streamed response's events go out as the model's
/// answer arrives; its status waits for the first token, so that a failure before one answers with its own.
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
            try await models.keepingBodies(request, context) { body, keeper in
                try await respond(request, body, keeper: keeper, context)
            }
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

    private func respond(
        _ request: Request,
        _ body: JSONValue,
        keeper: RequestBodyKeeper?,
        _ context: CaravanRequestContext
    ) async throws -> Response {
        let orgID = try context.organizationID()
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
        var callContext = ModelRoutes.callContext(orgID: orgID, context, endpoint: "responses")
        callContext.cacheable = !options.stream && request.headers[.cacheControl]?.contains("no-cache") != true
        let createdAt = gateway.clock.nowMilliseconds()
        let suffix = String(Identifier.make("r", milliseconds: createdAt).dropFirst(2))
        let id = "resp_" + suffix
        /// The response object once the model answered; stored (unless `store: false`) and kept in the request log.
        let store = self.store
        let clock = gateway.clock
        let complete = { @Sendable (answer: ModelAnswer) async throws -> JSONValue in
            let completed = ResponsesWireFormat.response(
                id: id,
                model: answer.ref.description,
                createdAt: createdAt / 1000,
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
                    at: clock.nowMilliseconds()
                )
            }
            keeper?.keep(completed)
            return completed
        }
        guard options.stream else {
            let answer: ModelAnswer
            do {
                answer = try await gateway.complete(full, route: route, context: callContext)
            } catch {
                throw ModelRoutes.apiError(error)
            }
            return .json(try await complete(answer))
        }
        let call = try await StreamedModelCall.start(gateway: gateway, full, route: route, context: callContext)
        let started = ResponsesWireFormat.response(
            id: id,
            model: route[0].description,
            createdAt: createdAt / 1000,
            status: "in_progress",
            output: [],
            usage: nil,
            request: chat,
            options: options
        )
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                var encoder = ResponsesStreamEncoder(id: suffix)
                do {
                    try await writer.write(Self.frames(encoder.start(started)))
                    for await delta in call.deltas {
                        try await writer.write(Self.frames(encoder.events(of: delta)))
                    }
                } catch {
                    call.cancel()  // the client left
                    throw error
                }
                switch await call.result {
                case .success(let answer):
                    let completed = try await complete(answer)
                    try await writer.write(Self.frames(encoder.finish(answer.response, completed: completed)))
                case .failure(let error):
                    // After the first token the status is sent: the failure is the last event.
                    let problem = ModelRoutes.apiError(error)
                    keeper?.keep(problem)
                    var failed = started.objectValue ?? [:]
                    failed["status"] = "failed"
                    failed["error"] = ["code": .string(error.code.rawValue), "message": .string(problem.detail)]
                    try await writer.write(Self.frames(encoder.fail(.object(failed))))
                }
                try await writer.finish(nil)
            }
        )
    }

    /// Server-sent events, each named by its type.
    static func frames(_ events: [ResponsesStreamEncoder.Event]) -> ByteBuffer {
        var text = ""
        for event in events {
            text += "event: \(event.type)\ndata: "
            event.data.write(to: &text)
            text += "\n\n"
        }
        return ByteBuffer(string: text)
    }
}
