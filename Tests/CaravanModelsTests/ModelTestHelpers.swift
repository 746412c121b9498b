import AsyncHTTPClient
import CaravanCore
import CaravanModels
import CaravanOutbound
import Synchronization

/// The egress policy of these tests: the fakes listen on loopback.
let loopbackEgress = try! EgressPolicy(allowList: "127.0.0.1")

/// One HTTP client for the providers under test (it lives as long as the test process), and the egress client
/// over it that lets loopback through.
let loopbackHTTPClient = EgressHTTPClient.makeHTTPClient()
let loopbackClient = EgressHTTPClient(client: loopbackHTTPClient, policy: loopbackEgress)
let openAIProvider = OpenAIProvider(client: loopbackClient)
let anthropicProvider = AnthropicProvider(client: loopbackClient)

/// An endpoint pointing at a fake server.
func endpoint(
    _ baseURL: String,
    kind: ProviderKind,
    name: String? = nil,
    apiKey: String? = "sk-test",
    timeoutMilliseconds: Int64 = 5_000,
    maxRetries: Int = 0
) -> ProviderEndpoint {
    ProviderEndpoint(
        name: name ?? kind.rawValue,
        kind: kind,
        baseURL: baseURL,
        apiKey: apiKey,
        timeoutMilliseconds: timeoutMilliseconds,
        maxRetries: maxRetries
    )
}

/// Collects the deltas of a streamed answer.
final class DeltaCollector: Sendable {
    private let deltas = Mutex<[ChatDelta]>([])

    var handler: ChatDeltaHandler {
        { delta in self.deltas.withLock { $0.append(delta) } }
    }

    var all: [ChatDelta] { deltas.withLock { $0 } }

    /// The text deltas joined.
    var text: String {
        all.compactMap { if case .text(let text) = $0 { text } else { nil } }.joined()
    }

    /// The argument fragments of tool call `index` joined.
    func arguments(_ index: Int) -> String {
        all.compactMap { if case .toolCallArguments(index, let fragment) = $0 { fragment } else { nil } }.joined()
    }

    /// The tool calls started, in order.
    var started: [(index: Int, id: String, name: String)] {
        all.compactMap { if case .toolCallStarted(let index, let id, let name) = $0 { (index, id, name) } else { nil } }
    }
}

/// Runs `body` and returns the `ProviderError` it threw, or `nil` when it did not throw.
func providerError<T>(_ body: () async throws(ProviderError) -> T) async -> ProviderError? {
    do {
        _ = try await body()
        return nil
    } catch {
        return error
    }
}

/// Parses JSON text for assertions.
func json(_ text: String) -> JSONValue {
    try! JSONValue(parsing: Array(text.utf8))
}

/// A `ChatResponse` without the provider's response id, to compare answers of different calls.
func withoutID(_ response: ChatResponse) -> ChatResponse {
    var response = response
    response.providerResponseID = nil
    return response
}

/// A clock and a list of waits, for router tests.
final class TestTime: Sendable {
    private let state = Mutex<(now: Int64, sleeps: [Int64])>((1_000_000, []))

    var now: Int64 { state.withLock { $0.now } }
    var sleeps: [Int64] { state.withLock { $0.sleeps } }

    func advance(_ milliseconds: Int64) {
        state.withLock { $0.now += milliseconds }
    }

    /// Records the wait and returns at once.
    func sleep(_ milliseconds: Int64) async throws {
        state.withLock { $0.sleeps.append(milliseconds) }
    }
}
