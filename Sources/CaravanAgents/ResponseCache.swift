public import CaravanCore
public import CaravanModels
import Crypto
import Synchronization

/// Answers of deterministic gateway calls (`temperature: 0`) kept for a while, so that the same request to the
/// same models is answered again without calling a provider (exact match: every message, tool and parameter).
/// Per node, in memory, bounded; an answer served from it is not metered, since no tokens were spent.
public final class ResponseCache: Sendable {
    private struct Entry {
        var answer: ModelAnswer
        var storedAt: Int64
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let timeToLive: Int64
    private let capacity: Int
    private let clock: WallClock

    /// - Parameters:
    ///   - timeToLive: how long an answer is served again, in milliseconds.
    ///   - capacity: the most answers kept (the oldest go first).
    public init(timeToLive: Int64, capacity: Int = 2_000, clock: WallClock = .system) {
        self.timeToLive = timeToLive
        self.capacity = capacity
        self.clock = clock
    }

    /// Whether a call may be answered from the cache: deterministic and not streamed.
    public static func isCacheable(_ request: ChatRequest) -> Bool {
        request.temperature == 0
    }

    /// The key of a call: the organization, the route and the request as sent (canonical JSON), hashed.
    public static func key(orgID: String, route: [ModelRef], request: ChatRequest) -> String {
        var text = orgID + "\u{0}" + route.map(\.description).joined(separator: ",") + "\u{0}"
        text += OpenAIWireFormat.encodeRequest(request, stream: false).canonicalText
        return SHA256.hash(data: Array(text.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    public func answer(for key: String) -> ModelAnswer? {
        let now = clock.nowMilliseconds()
        return entries.withLock { entries in
            guard let entry = entries[key] else { return nil }
            guard now - entry.storedAt < timeToLive else {
                entries[key] = nil
                return nil
            }
            return entry.answer
        }
    }

    public func store(_ answer: ModelAnswer, for key: String) {
        let now = clock.nowMilliseconds()
        entries.withLock { entries in
            if entries.count >= capacity {
                // Expired ones first; if none, the oldest tenth.
                entries = entries.filter { now - $0.value.storedAt < timeToLive }
                if entries.count >= capacity {
                    let oldest = entries.sorted { $0.value.storedAt < $1.value.storedAt }.prefix(max(1, capacity / 10))
                    for (key, _) in oldest { entries[key] = nil }
                }
            }
            entries[key] = Entry(answer: answer, storedAt: now)
        }
    }
}
