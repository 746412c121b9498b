import CaravanCore
import CaravanStorage
import Hummingbird
import Logging

/// The unauthenticated endpoints an operator and a load balancer use: liveness, readiness, metrics, the OpenAPI
/// document.
struct SystemRoutes {
    let database: any Database
    let version: String

    func register(in routes: RouteRegistrar) {
        let statusSchema: JSONValue = [
            "type": "object", "required": ["status"], "properties": ["status": ["type": "string"]],
        ]
        routes.add(
            EndpointDescription(
                .get,
                "/healthz",
                operationID: "getHealth",
                summary: "The process is alive.",
                tag: "system",
                access: .open,
                responses: [200: ("Alive", statusSchema, "application/json")]
            )
        ) { _, _ in
            .json(["status": "ok", "version": .string(version)])
        }
        routes.add(
            EndpointDescription(
                .get,
                "/readyz",
                operationID: "getReadiness",
                summary: "The database is reachable.",
                tag: "system",
                access: .open,
                responses: [
                    200: ("Ready", statusSchema, "application/json"),
                    503: ("The database is unreachable", nil, "application/problem+json"),
                ]
            )
        ) { _, context in
            do {
                try await database.ping()
            } catch {
                context.logger.warning(
                    "Not ready: the database does not answer",
                    metadata: ["error.message": "\(error)"]
                )
                throw CaravanError(.unavailable, "The database is unreachable.")
            }
            return .json(["status": "ready"])
        }
        routes.add(
            EndpointDescription(
                .get,
                "/metrics",
                operationID: "getMetrics",
                summary: "Prometheus metrics.",
                tag: "system",
                access: .open,
                responses: [200: ("Prometheus text format", nil, "text/plain")]
            )
        ) { _, _ in
            .text(Telemetry.render(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        routes.add(
            EndpointDescription(
                .get,
                "/openapi.json",
                operationID: "getOpenAPI",
                summary: "This API's OpenAPI 3.1 document.",
                tag: "system",
                access: .open,
                responses: [200: ("The OpenAPI document", ["type": "object"], "application/json")]
            )
        ) { [catalog = routes.catalog] _, _ in
            .json(OpenAPIDocument(endpoints: catalog.endpoints, version: version).json)
        }
    }
}
