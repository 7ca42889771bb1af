/// A parsed INI file in supervisord's dialect, before any section or key is interpreted.
///
/// Rules (those of supervisord's configuration parser):
/// - `[name]` starts a section; the name is trimmed and must not be empty.
/// - `key = value` or `key: value` (the first `=` or `:` separates); keys are trimmed and
///   lower-cased, values trimmed.
/// - A line whose first non-blank character is `;` or `#` is a comment; elsewhere `;` starts a
///   comment only when preceded by a space or tab (`a;b` keeps its `;`, `#` is never inline).
/// - A line starting with a space or tab continues the previous value: it is appended after a
///   newline. Blank and comment lines inside a continued value are skipped.
/// - A key twice in one section is an error.
struct INIFile: Sendable, Equatable {
    /// One `key = value`, with continuation lines joined by `\n`.
    struct Entry: Sendable, Equatable {
        var key: String
        var value: String
        /// The line of the key.
        var line: Int
    }

    /// One `[name]` section and its entries in file order.
    struct Section: Sendable, Equatable {
        var name: String
        /// The line of the header.
        var line: Int
        var entries: [Entry]
    }

    var sections: [Section]

    /// Parses `text`; `file` names the file in errors.
    static func parse(_ text: String, file: String) throws(ConfigurationError) -> INIFile {
        var sections: [Section] = []
        /// Whether the last entry of the last section may take continuation lines.
        var continuable = false
        var lineNumber = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = Substring(rawLine)
            if line.last == "\r" { line = line.dropLast() }
            let content = line.drop(while: isBlank)
            if content.isEmpty || content.first == ";" || content.first == "#" { continue }

            if let first = line.first, isBlank(first) {
                // A continuation line.
                guard continuable, var section = sections.popLast(), var entry = section.entries.popLast() else {
                    throw ConfigurationError(
                        .syntax, file: file, line: lineNumber, section: sections.last?.name,
                        reason: "indented line '\(trimmed(content))' does not continue a value"
                    )
                }
                let piece = trimmed(strippingInlineComment(content))
                if !piece.isEmpty {
                    entry.value = entry.value.isEmpty ? piece : entry.value + "\n" + piece
                }
                section.entries.append(entry)
                sections.append(section)
                continue
            }

            let body = trimmed(strippingInlineComment(line))
            if body.first == "[" {
                guard body.last == "]", body.count >= 2 else {
                    throw ConfigurationError(.syntax, file: file, line: lineNumber, reason: "section header '\(body)' does not end with ']'")
                }
                let name = trimmed(body.dropFirst().dropLast())
                guard !name.isEmpty else {
                    throw ConfigurationError(.syntax, file: file, line: lineNumber, reason: "empty section name '[]'")
                }
                sections.append(Section(name: name, line: lineNumber, entries: []))
                continuable = false
                continue
            }

            guard let separator = body.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                throw ConfigurationError(
                    .syntax, file: file, line: lineNumber, section: sections.last?.name,
                    reason: "expected '[section]' or 'key = value', got '\(body)'"
                )
            }
            let key = trimmed(body[..<separator]).lowercased()
            let value = trimmed(body[body.index(after: separator)...])
            guard !key.isEmpty else {
                throw ConfigurationError(.syntax, file: file, line: lineNumber, section: sections.last?.name, reason: "missing key before '\(body[separator])'")
            }
            guard var section = sections.popLast() else {
                throw ConfigurationError(.syntax, file: file, line: lineNumber, key: key, reason: "key outside of a section")
            }
            if let earlier = section.entries.first(where: { $0.key == key }) {
                throw ConfigurationError(
                    .duplicateKey, file: file, line: lineNumber, section: section.name, key: key,
                    reason: "given twice (first on line \(earlier.line))"
                )
            }
            section.entries.append(Entry(key: key, value: value, line: lineNumber))
            sections.append(section)
            continuable = true
        }
        return INIFile(sections: sections)
    }

    private static func isBlank(_ character: Character) -> Bool { character == " " || character == "\t" }

    private static func trimmed(_ text: Substring) -> String {
        String(text.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }

    /// `text` up to the first `;` that follows a space or tab.
    private static func strippingInlineComment(_ text: Substring) -> Substring {
        var previous: Character?
        for index in text.indices {
            let character = text[index]
            if character == ";", let previous, isBlank(previous) { return text[..<index] }
            previous = character
        }
        return text
    }
}
