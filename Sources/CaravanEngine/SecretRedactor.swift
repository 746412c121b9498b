public import CaravanCore
import Foundation

/// Replaces secret values wherever they appear in what a step produced (an upstream that echoes a header back,
/// an error quoting a URL), so that no stored output, event, error or audit entry holds one.
///
/// A value is found as it is and in the forms it takes on its way through a request: in any letter case (a host
/// name comes back lowercased from DNS), percent-encoded (in a path, a query or a form body), JSON-escaped, and
/// base64-encoded (standard or URL-safe, with or without padding).
public struct SecretRedactor: Sendable {
    static let mask = "[redacted]"
    /// Every form searched for, longest first, so that a secret containing another is masked whole.
    let forms: [String]

    public init(values: [String]) {
        var forms: Set<String> = []
        for value in values where !value.isEmpty {
            forms.insert(value)
            for allowed in [
                CharacterSet.alphanumerics, .urlQueryAllowed, .urlPathAllowed, .urlHostAllowed, .urlUserAllowed,
            ] {
                if let encoded = value.addingPercentEncoding(withAllowedCharacters: allowed) {
                    forms.insert(encoded)
                    forms.insert(encoded.replacingOccurrences(of: "%20", with: "+"))
                }
            }
            let json = JSONValue.string(value).canonicalText
            forms.insert(String(json.dropFirst().dropLast()))
            // Base64 of a short value is short and common text; only values of some length are searched encoded.
            if value.utf8.count >= 6 {
                let base64 = Data(value.utf8).base64EncodedString()
                let unpadded = base64.trimmingCharacters(in: CharacterSet(charactersIn: "="))
                forms.insert(unpadded)
                forms.insert(unpadded.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_"))
            }
        }
        self.forms = forms.filter { !$0.isEmpty }.sorted { $0.utf8.count > $1.utf8.count }
    }

    /// Whether there is nothing to redact.
    public var isEmpty: Bool { forms.isEmpty }

    public func redact(_ text: String) -> String {
        var result = text
        for form in forms where result.range(of: form, options: .caseInsensitive) != nil {
            result = result.replacingOccurrences(of: form, with: Self.mask, options: .caseInsensitive)
        }
        return result
    }

    public func redact(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string(let text): .string(redact(text))
        case .array(let items): .array(items.map(redact))
        case .object(let fields):
            .object(
                Dictionary(fields.map { (redact($0.key), redact($0.value)) }, uniquingKeysWith: { first, _ in first })
            )
        default: value
        }
    }
}
