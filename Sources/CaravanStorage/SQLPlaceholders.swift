/// Statements' `$1`-style placeholders, found outside string literals and quoted identifiers.
public enum SQLPlaceholders {
    /// `sql` with each placeholder `$n` (a `$` that does not end a name, then digits) replaced by `placeholder(n)`.
    public static func rewrite(_ sql: String, _ placeholder: (Int) -> String) -> String {
        guard sql.utf8.contains(UInt8(ascii: "$")) else { return sql }
        var output = ""
        output.reserveCapacity(sql.utf8.count + 16)
        var quote: Character?
        var previous: Character = " "
        var digits: String?
        func endPlaceholder() {
            guard let found = digits else { return }
            output += found.isEmpty ? "$" : placeholder(Int(found) ?? 0)
            digits = nil
        }
        for character in sql {
            if digits != nil {
                if character.isASCII, character.isNumber {
                    digits?.append(character)
                    previous = character
                    continue
                }
                endPlaceholder()
            }
            if let open = quote {
                if character == open { quote = nil }
                output.append(character)
            } else if character == "'" || character == "\"" {
                quote = character
                output.append(character)
            } else if character == "$" && !(previous.isLetter || previous.isNumber || previous == "_") {
                digits = ""
            } else {
                output.append(character)
            }
            previous = character
        }
        endPlaceholder()
        return output
    }
}
