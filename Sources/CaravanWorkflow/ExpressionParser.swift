import CaravanCore

/// A recursive-descent parser for `Expression`, with a depth limit so hostile input cannot exhaust the stack.
struct ExpressionParser {
    private let characters: [Character]
    private var position = 0
    private var depth = 0

    init(_ text: String) {
        self.characters = Array(text)
    }

    mutating func parseAll() throws(CaravanError) -> Expression {
        let expression = try parseOr()
        skipSpace()
        guard position == characters.count else { throw error("unexpected '\(characters[position])'") }
        return expression
    }

    private func error(_ message: String) -> CaravanError {
        CaravanError(.validationFailed, "Expression error at character \(position + 1): \(message).")
    }

    private mutating func skipSpace() {
        while position < characters.count, characters[position].isWhitespace { position += 1 }
    }

    private mutating func take(_ token: String) -> Bool {
        skipSpace()
        let tokenCharacters = Array(token)
        guard position + tokenCharacters.count <= characters.count,
            Array(characters[position..<position + tokenCharacters.count]) == tokenCharacters
        else { return false }
        position += tokenCharacters.count
        return true
    }

    private mutating func nested<T>(
        _ body: (inout ExpressionParser) throws(CaravanError) -> T
    ) throws(CaravanError) -> T {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Expression.maxDepth else { throw error("nested deeper than \(Expression.maxDepth) levels") }
        return try body(&self)
    }

    private mutating func parseOr() throws(CaravanError) -> Expression {
        try nested { (parser: inout ExpressionParser) throws(CaravanError) -> Expression in
            var left = try parser.parseAnd()
            while parser.take("||") { left = .binary(.or, left, try parser.parseAnd()) }
            return left
        }
    }

    private mutating func parseAnd() throws(CaravanError) -> Expression {
        var left = try parseComparison()
        while take("&&") { left = .binary(.and, left, try parseComparison()) }
        return left
    }

    private mutating func parseComparison() throws(CaravanError) -> Expression {
        let left = try parseUnary()
        for op in [Expression.BinaryOperator.equal, .notEqual, .lessOrEqual, .greaterOrEqual, .less, .greater]
        where take(op.rawValue) {
            return .binary(op, left, try parseUnary())
        }
        return left
    }

    private mutating func parseUnary() throws(CaravanError) -> Expression {
        skipSpace()
        if position < characters.count, characters[position] == "!",
            !(position + 1 < characters.count && characters[position + 1] == "=")
        {
            position += 1
            return try nested { (parser: inout ExpressionParser) throws(CaravanError) -> Expression in
                .not(try parser.parseUnary())
            }
        }
        return try parsePrimary()
    }

    private mutating func parsePrimary() throws(CaravanError) -> Expression {
        skipSpace()
        guard position < characters.count else { throw error("the expression ends too soon") }
        let character = characters[position]
        if character == "(" {
            position += 1
            let inner = try parseOr()
            guard take(")") else { throw error("expected ')'") }
            return inner
        }
        if character == "[" {
            position += 1
            var items: [JSONValue] = []
            if !take("]") {
                repeat {
                    guard case .literal(let value) = try parsePrimary() else {
                        throw error("array literals hold literals only")
                    }
                    items.append(value)
                } while take(",")
                guard take("]") else { throw error("expected ']'") }
            }
            return .literal(.array(items))
        }
        if character == "'" || character == "\"" { return .literal(.string(try parseString())) }
        if character.isNumber
            || (character == "-" && position + 1 < characters.count && characters[position + 1].isNumber)
        {
            return .literal(try parseNumber())
        }
        if character.isLetter || character == "_" {
            let name = parseIdentifier()
            switch name {
            case "true": return .literal(true)
            case "false": return .literal(false)
            case "null": return .literal(.null)
            default: break
            }
            if take("(") {
                guard name == "len" || name == "contains" else { throw error("unknown function '\(name)'") }
                var arguments: [Expression] = []
                if !take(")") {
                    repeat { arguments.append(try parseOr()) } while take(",")
                    guard take(")") else { throw error("expected ')'") }
                }
                guard arguments.count == (name == "len" ? 1 : 2) else {
                    throw error("\(name)() takes \(name == "len" ? 1 : 2) argument(s)")
                }
                return .call(name, arguments)
            }
            return .path(try parsePathRest(first: name))
        }
        throw error("unexpected '\(character)'")
    }

    private mutating func parseIdentifier() -> String {
        let start = position
        while position < characters.count,
            characters[position].isLetter || characters[position].isNumber || characters[position] == "_"
                || characters[position] == "-"
        {
            position += 1
        }
        return String(characters[start..<position])
    }

    private mutating func parsePathRest(first: String) throws(CaravanError) -> [Expression.PathComponent] {
        var components: [Expression.PathComponent] = [.key(first)]
        while position < characters.count {
            if characters[position] == "." {
                position += 1
                let key = parseIdentifier()
                guard !key.isEmpty else { throw error("expected a name after '.'") }
                components.append(.key(key))
            } else if characters[position] == "[" {
                position += 1
                skipSpace()
                guard position < characters.count else { throw error("expected an index") }
                if characters[position] == "'" || characters[position] == "\"" {
                    components.append(.key(try parseString()))
                } else {
                    guard case .int(let index) = try parseNumber() else { throw error("an index must be an integer") }
                    components.append(.index(Int(index)))
                }
                guard take("]") else { throw error("expected ']'") }
            } else {
                break
            }
        }
        return components
    }

    private mutating func parseString() throws(CaravanError) -> String {
        let quote = characters[position]
        position += 1
        var text = ""
        while position < characters.count {
            let character = characters[position]
            position += 1
            if character == quote { return text }
            if character == "\\", position < characters.count {
                let escaped = characters[position]
                position += 1
                switch escaped {
                case "n": text.append("\n")
                case "t": text.append("\t")
                default: text.append(escaped)
                }
            } else {
                text.append(character)
            }
        }
        throw error("unterminated string")
    }

    private mutating func parseNumber() throws(CaravanError) -> JSONValue {
        let start = position
        if characters[position] == "-" { position += 1 }
        while position < characters.count, characters[position].isNumber || characters[position] == "." {
            position += 1
        }
        let text = String(characters[start..<position])
        if let value = Int64(text) { return .int(value) }
        if let value = Double(text) { return .double(value) }
        throw error("'\(text)' is not a number")
    }
}
