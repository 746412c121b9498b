import CaravanCore
import Crypto
import Foundation

/// Makes one refresh of one refresh token, however many of a browser's requests present it at once.
///
/// A refresh token works once, and presenting a used one revokes the whole session (the sign of a stolen token).
/// A browser whose access cookie has lapsed may send several requests together (a page, the rows its script
/// fetches, a reconnecting event stream), each with the same refresh cookie: without this, the second would end the
/// session the first just renewed. The first request refreshes; the others wait for its answer, and requests that
/// come with the same token within `reuseWindow` after it get the same new tokens. Only the digest of a token is
/// kept, and only for that window.
actor RefreshCoalescer {
    /// What a refresh answered: the new tokens as JSON, or `nil` when the token did not work.
    typealias Outcome = JSONValue?

    private enum Entry {
        case inFlight([CheckedContinuation<Outcome, Never>])
        case done(Outcome, at: ContinuousClock.Instant)
    }

    /// How long the answer of a refresh is handed to later requests with the same token.
    static let reuseWindow: Duration = .seconds(30)

    private var entries: [String: Entry] = [:]

    /// The outcome of refreshing `token`: `perform`'s, run once for all callers presenting it at about the same time.
    func refresh(_ token: String, perform: @Sendable () async -> Outcome) async -> Outcome {
        let now = ContinuousClock.now
        entries = entries.filter { _, entry in
            if case .done(_, let at) = entry { return now - at < Self.reuseWindow }
            return true
        }
        let key = SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
        switch entries[key] {
        case .done(let outcome, _):
            return outcome
        case .inFlight(let waiters):
            return await withCheckedContinuation { continuation in
                entries[key] = .inFlight(waiters + [continuation])
            }
        case nil:
            entries[key] = .inFlight([])
            let outcome = await perform()
            if case .inFlight(let waiters) = entries[key] {
                for waiter in waiters { waiter.resume(returning: outcome) }
            }
            entries[key] = .done(outcome, at: ContinuousClock.now)
            return outcome
        }
    }
}
