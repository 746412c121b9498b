import Hummingbird

/// (Being written.)
struct UsagePages: Sendable {
    let console: Console

    func register(in router: Router<ConsoleRequestContext>) {}

    static let templates: [String: String] = [:]
}
