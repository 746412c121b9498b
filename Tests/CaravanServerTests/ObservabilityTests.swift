import CaravanCore
import CaravanServer
import CaravanTestSupport
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite("Observability")
struct ObservabilityTests {
    @Test("Every log line of a request carries its request id; the route is logged as its template")
    func requestIDInLogs() async throws {
        let output = JSONLogOutput.memory()
        try await withTestApplication(.sqlite, logOutput: output) { client, _ in
            let response = try await client.send(.get, "/v1/runs/run_missing", headers: [.requestID: "trace-7"])
            #expect(response.status == .notFound)
            let lines = try output.captured.map { try JSONValue(parsing: Array($0.utf8)) }
            let handled = try #require(
                lines.first { $0["msg"] == "Request handled" && $0["caravan.request_id"] == "trace-7" }
            )
            #expect(handled["http.route"] == "/v1/runs/{id}")
            #expect(handled["http.response.status_code"] == "404")
            #expect(handled["level"] == "debug")
            for line in lines where line["caravan.request_id"] != nil {
                #expect(line["ts"]?.stringValue?.hasSuffix("Z") == true)
            }
        }
    }
}
