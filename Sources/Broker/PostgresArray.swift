import DatabaseSupport

/// PostgreSQL array literals for parameters (`$1::text[]`): the values travel as one parameter
/// value, quoted element by element; nothing is spliced into SQL text.
enum PostgresArray {
    static func text(_ values: [String?]) -> SQLValue {
        var literal = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { literal += "," }
            guard let value else { literal += "NULL"; continue }
            literal += "\""
            for character in value.unicodeScalars {
                if character == "\"" || character == "\\" { literal += "\\" }
                literal.unicodeScalars.append(character)
            }
            literal += "\""
        }
        literal += "}"
        return .text(literal)
    }

    static func integers(_ values: [Int64?]) -> SQLValue {
        .text("{" + values.map { $0.map(String.init) ?? "NULL" }.joined(separator: ",") + "}")
    }
}
