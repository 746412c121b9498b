import Hummingbird

/// (Being written.)
struct SettingsPages: Sendable {
    let console: Console

    func register(in router: Router<ConsoleRequestContext>) {}

    static let templates: [String: String] = [:]
}
