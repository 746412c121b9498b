/// A duration as the public contract writes it: `500ms`, `30s`, `5m`, `2h`, `1d`, or a sum such as `1h30m`.
public struct CaravanDuration: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The length in milliseconds.
    public var milliseconds: Int64

    /// Creates a duration of `milliseconds`.
    public init(milliseconds: Int64) {
        self.milliseconds = milliseconds
    }

    /// Parses the contract's text form.
    /// - Parameter text: e.g. `500ms`, `30s`, `1h30m`.
    /// - Returns: `nil` when the text is not a valid, non-negative duration.
    public init?(parsing text: String) {
        var total: Int64 = 0
        var digits = ""
        var unit = ""
        var sawPart = false
        func flush() -> Bool {
            guard let number = Int64(digits), !digits.isEmpty else { return false }
            let factor: Int64
            switch unit {
            case "ms": factor = 1
            case "s": factor = 1_000
            case "m": factor = 60_000
            case "h": factor = 3_600_000
            case "d": factor = 86_400_000
            default: return false
            }
            let (product, overflow) = number.multipliedReportingOverflow(by: factor)
            guard !overflow else { return false }
            let (sum, overflow2) = total.addingReportingOverflow(product)
            guard !overflow2 else { return false }
            total = sum
            digits = ""
            unit = ""
            sawPart = true
            return true
        }
        guard !text.isEmpty, text.utf8.count <= 64 else { return nil }
        for character in text {
            if character.isASCII, character.isNumber {
                if !unit.isEmpty {
                    guard flush() else { return nil }
                }
                digits.append(character)
            } else if character == "m" || character == "s" || character == "h" || character == "d" {
                guard !digits.isEmpty else { return nil }
                unit.append(character)
            } else {
                return nil
            }
        }
        guard flush(), sawPart else { return nil }
        self.milliseconds = total
    }

    /// The contract's text form, e.g. `1h30m` or `250ms`.
    public var description: String {
        if milliseconds == 0 { return "0s" }
        var rest = milliseconds
        var text = ""
        for (unit, size) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if rest >= size {
                text += "\(rest / size)\(unit)"
                rest %= size
            }
        }
        return text
    }

    /// The same length as a Swift `Duration`.
    public var duration: Duration { .milliseconds(milliseconds) }

    public static func < (lhs: CaravanDuration, rhs: CaravanDuration) -> Bool {
        lhs.milliseconds < rhs.milliseconds
    }

    /// A duration of `value` seconds.
    public static func seconds(_ value: Int64) -> CaravanDuration { .init(milliseconds: value * 1_000) }
}
