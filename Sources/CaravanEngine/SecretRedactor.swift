import CaravanCore
import Foundation

/// Replaces secret values wherever they appear in what a step produced (an upstream that echoes a header back,
/// an error quoting a URL), so that no stored output, event or error holds one.
public struct SecretRedactor: Sendable {
    static let mask = "[redacted]"
    let values: [String]

    public init(values: [String]) {
        // Longest first, so that a secret containing another is masked whole; empty values mask nothing.
        self.values = values.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
    }

    public func redact(_ text: String) -> String {
        var result = text
        for value in values where result.contains(value) {
            result = result.replacingOccurrences(of: value, with: Self.mask)
        }
        return result
    }

    func redact(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string(let text): .string(redact(text))
        case .array(let items): .array(items.map(redact))
        case .object(let fields):
            .object(Dictionary(uniqueKeysWithValues: fields.map { (redact($0.key), redact($0.value)) }))
        default: value
        }
    }
}
