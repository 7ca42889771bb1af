// Static checks of the container packaging under docker/ against the package itself: no Docker
// engine is needed. Every check collects problems as strings, so a failure names the file, the
// service or line, and what is wrong; the "…CanFail" tests feed each check a broken variant and
// expect it to complain.
//
// What is checked:
// - docker/Dockerfile builds (release, static Swift runtime) and copies exactly the executable
//   products of Package.swift, runs as a non-root user, has STOPSIGNAL SIGTERM and a HEALTHCHECK;
// - every command of docker/compose.yaml, the Dockerfile and docker/supervisor.conf runs an
//   executable product, with real `exchanger` subcommands, real long options and real programs;
// - every EXCHANGER_* / AWS_* variable used there is documented in README.md and read in Sources/;
// - no service has a container_name and no service of the exchanger image publishes a port;
// - every secret is declared, lives under docker/secrets/ (git-ignored) and is written by
//   docker/make-secrets.sh; postgres, minio and supervisor have health checks;
// - docker/supervisor.conf parses with the real parser (SupervisorConfiguration.load) and
//   `exchanger-supervisor --check` accepts it;
// - EXCHANGER_DATABASE_URL_FILE (the broker URL as a secret file) works for the workers' options,
//   `exchanger migrate` and `exchanger-supervisor`.
//
// Keep docker/compose.yaml within the YAML subset MiniYAML reads (described at the top of that file).
import ExchangerTestSupport
import Foundation
import ProcessSupport
import Supervisor
import Testing
import WorkerRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Everything of this file lives in this namespace, so its helpers never meet other test files' names.
enum ContainerPackaging {
    // MARK: - The repository

    /// Paths and file contents of the repository this test file belongs to.
    enum Repository {
        /// The repository root (this file is Tests/SupervisorTests/ContainerPackagingTests.swift).
        static let root: URL = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

        static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

        static func read(_ relative: String) throws -> String {
            do {
                return try String(contentsOfFile: path(relative), encoding: .utf8)
            } catch {
                Issue.record("cannot read \(relative): \(error)")
                throw error
            }
        }

        /// Every Swift file under Sources/, by path relative to the root.
        static func swiftSources() throws -> [(path: String, text: String)] {
            let sources = root.appendingPathComponent("Sources")
            guard let walker = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil) else { return [] }
            var files: [(String, String)] = []
            for case let url as URL in walker where url.pathExtension == "swift" {
                let relative = String(url.path.dropFirst(root.path.count + 1))
                files.append((relative, try String(contentsOf: url, encoding: .utf8)))
            }
            return files.sorted { $0.0 < $1.0 }
        }
    }

    // MARK: - Facts about the package

    /// What the package provides, read from its manifest and sources.
    struct PackageFacts: Sendable {
        /// `.executable(name:)` products of Package.swift.
        var executables: Set<String>
        /// The `exchanger` subcommands (`migrate`, `queues`, …).
        var subcommands: Set<String>
        /// Every long option (`--program`) an ArgumentParser `@Option`/`@Flag` in Sources/ declares.
        var longOptions: Set<String>
        /// Program names processors declare (`static let program = "s3-copy"`).
        var programs: Set<String>
        /// The code lines (comments removed) of every Swift source, by file.
        var code: [String: String]
        /// README.md.
        var readme: String

        static func load() throws -> PackageFacts {
            let manifest = try Repository.read("Package.swift")
            let sources = try Repository.swiftSources()
            return PackageFacts(
                executables: Set(matches(#"\.executable\(\s*name:\s*"([^"]+)""#, in: manifest)),
                subcommands: try exchangerSubcommands(sources),
                longOptions: longOptions(sources),
                programs: Set(sources.flatMap { matches(#"static let program\s*=\s*"([^"]+)""#, in: $0.text) }),
                code: Dictionary(uniqueKeysWithValues: sources.map { ($0.path, codeOnly($0.text)) }),
                readme: try Repository.read("README.md")
            )
        }

        /// The subcommands listed by the `exchanger` command's configuration, each by the
        /// `commandName` of its type.
        static func exchangerSubcommands(_ sources: [(path: String, text: String)]) throws -> Set<String> {
            let cli = sources.filter { $0.path.hasPrefix("Sources/ExchangerCLI/") }
            guard let root = cli.first(where: { $0.text.contains(#"commandName: "exchanger""#) }),
                let list = matches(#"commandName:\s*"exchanger"[\s\S]*?subcommands:\s*\[([^\]]*)\]"#, in: root.text).first
            else {
                Issue.record("no `exchanger` command with a subcommands list in Sources/ExchangerCLI")
                return []
            }
            var names: Set<String> = []
            for type in matches(#"(\w+)\.self"#, in: list) {
                let pattern = #"struct "# + type + #"\b[\s\S]*?commandName:\s*"([^"]+)""#
                guard let name = cli.lazy.compactMap({ matches(pattern, in: $0.text).first }).first else {
                    Issue.record("subcommand type \(type) has no commandName in Sources/ExchangerCLI")
                    continue
                }
                names.insert(name)
            }
            return names
        }

        /// `--name` of every `@Option`/`@Flag` property (ArgumentParser's kebab-case of the property
        /// name) and every `.customLong("name")`.
        static func longOptions(_ sources: [(path: String, text: String)]) -> Set<String> {
            var options: Set<String> = []
            for file in sources {
                for property in matches(#"@(?:Option|Flag)\b[\s\S]*?\bvar\s+(\w+)"#, in: file.text) {
                    options.insert("--" + kebabCase(property))
                }
                for custom in matches(#"\.customLong\(\s*"([^"]+)""#, in: file.text) { options.insert("--" + custom) }
            }
            return options
        }

        /// ArgumentParser's default long name: `storageURL` → `storage-url`, `metricsPort` → `metrics-port`.
        static func kebabCase(_ name: String) -> String {
            let characters = Array(name)
            var result = ""
            for (index, character) in characters.enumerated() {
                if character.isUppercase, index > 0 {
                    let previous = characters[index - 1]
                    let next = index + 1 < characters.count ? characters[index + 1] : nil
                    if previous.isLowercase || previous.isNumber || (previous.isUppercase && next?.isLowercase == true) {
                        result.append("-")
                    }
                }
                result.append(contentsOf: character.lowercased())
            }
            return result
        }

        /// Whether `name` is read by code in Sources/: it appears outside comments; a `NAME_FILE`
        /// counts when `NAME` and the `_FILE` suffix both appear in one file's code (a generic
        /// `name + "_FILE"` lookup, as in S3Configuration).
        func isRead(_ name: String) -> Bool {
            if code.values.contains(where: { $0.contains(name) }) { return true }
            guard name.hasSuffix("_FILE") else { return false }
            let base = String(name.dropLast("_FILE".count))
            return code.values.contains { $0.contains("\"\(base)\"") && $0.contains("\"_FILE\"") }
        }
    }

    /// The lines of Swift source without `//` comments (string literals containing `//` are kept
    /// when the `//` follows a `:` as in URLs).
    static func codeOnly(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            let trimmed = line.drop(while: { $0 == " " })
            if trimmed.hasPrefix("//") { return "" }
            return line
        }.joined(separator: "\n")
    }

    /// The first capture group of every match of `pattern` in `text`.
    static func matches(_ pattern: String, in text: String) -> [String] {
        guard let regex = try? NSRegularExpression(pattern: pattern) else {
            Issue.record("bad pattern \(pattern)")
            return []
        }
        let range = NSRange(text.startIndex..., in: text)
        return regex.matches(in: text, range: range).compactMap { match in
            guard match.numberOfRanges > 1, let captured = Range(match.range(at: 1), in: text) else { return nil }
            return String(text[captured])
        }
    }

    /// Every `EXCHANGER_*` / `AWS_*` variable name in `text`.
    static func variableNames(in text: String) -> Set<String> {
        Set(matches(#"\b((?:EXCHANGER|AWS)_[A-Z0-9_]*[A-Z0-9])\b"#, in: text))
    }

    // MARK: - A reader for the YAML subset of docker/compose.yaml

    /// A YAML value of the subset docker/compose.yaml keeps to (see the comment at its top).
    indirect enum YAMLNode: Equatable, Sendable {
        case scalar(String)
        case sequence([YAMLNode])
        case mapping([Entry])

        struct Entry: Equatable, Sendable {
            var key: String
            var value: YAMLNode
        }

        subscript(key: String) -> YAMLNode? {
            guard case .mapping(let entries) = self else { return nil }
            return entries.first { $0.key == key }?.value
        }

        var string: String? {
            if case .scalar(let text) = self { return text }
            return nil
        }

        var items: [YAMLNode] {
            if case .sequence(let items) = self { return items }
            return []
        }

        var entries: [Entry] {
            if case .mapping(let entries) = self { return entries }
            return []
        }

        var keys: [String] { entries.map(\.key) }
    }

    struct YAMLError: Error, CustomStringConvertible {
        var line: Int
        var reason: String
        var description: String { "compose.yaml:\(line): \(reason)" }
    }

    /// A line-oriented reader: block mappings and sequences by indentation, one-line scalars and flow
    /// sequences, block scalars, anchors, aliases and merge keys. Anything else is an error naming
    /// the line, so the file cannot drift out of what the checks understand.
    struct MiniYAML {
        private struct Line {
            var number: Int
            var indent: Int
            var text: Substring
            var isIgnorable: Bool
        }

        private var lines: [Line] = []
        private var index = 0
        private var anchors: [String: YAMLNode] = [:]

        static func parse(_ text: String) throws -> YAMLNode {
            var reader = MiniYAML()
            for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let raw = raw.last == "\r" ? raw.dropLast() : raw
                let indentation = raw.prefix(while: { $0 == " " || $0 == "\t" })
                let body = raw.dropFirst(indentation.count)
                let ignorable = body.isEmpty || body.hasPrefix("#")
                if indentation.contains("\t"), !ignorable {
                    throw YAMLError(line: offset + 1, reason: "tab in indentation")
                }
                reader.lines.append(Line(number: offset + 1, indent: indentation.count, text: body, isIgnorable: ignorable))
            }
            reader.skipIgnorable()
            guard reader.index < reader.lines.count else { return .mapping([]) }
            let node = try reader.block(indent: reader.lines[reader.index].indent)
            reader.skipIgnorable()
            if reader.index < reader.lines.count {
                throw YAMLError(line: reader.lines[reader.index].number, reason: "unexpected indentation")
            }
            return node
        }

        private mutating func skipIgnorable() {
            while index < lines.count, lines[index].isIgnorable { index += 1 }
        }

        private static func isSequenceItem(_ text: Substring) -> Bool { text == "-" || text.hasPrefix("- ") }

        private mutating func block(indent: Int) throws -> YAMLNode {
            Self.isSequenceItem(lines[index].text) ? try sequence(indent: indent) : try mapping(indent: indent)
        }

        private mutating func mapping(indent: Int) throws -> YAMLNode {
            var entries: [YAMLNode.Entry] = []
            var merged: [YAMLNode.Entry] = []
            while true {
                skipIgnorable()
                guard index < lines.count, lines[index].indent >= indent else { break }
                let line = lines[index]
                if line.indent > indent { throw YAMLError(line: line.number, reason: "unexpected indentation") }
                if Self.isSequenceItem(line.text) { break }
                guard let (key, rest) = try Self.splitKey(line.text, line: line.number) else {
                    throw YAMLError(line: line.number, reason: "expected 'key: value', got '\(line.text)'")
                }
                index += 1
                let value = try self.value(rest, parentIndent: indent, line: line.number, sequenceAtSameIndent: true)
                if key == "<<" {
                    guard case .mapping(let source) = value else {
                        throw YAMLError(line: line.number, reason: "a merge key takes an alias of a mapping")
                    }
                    merged += source
                } else {
                    if entries.contains(where: { $0.key == key }) {
                        throw YAMLError(line: line.number, reason: "duplicate key '\(key)'")
                    }
                    entries.append(YAMLNode.Entry(key: key, value: value))
                }
            }
            for entry in merged where !entries.contains(where: { $0.key == entry.key }) { entries.append(entry) }
            return .mapping(entries)
        }

        private mutating func sequence(indent: Int) throws -> YAMLNode {
            var items: [YAMLNode] = []
            while true {
                skipIgnorable()
                guard index < lines.count, lines[index].indent == indent, Self.isSequenceItem(lines[index].text) else { break }
                let line = lines[index]
                let rest = line.text == "-" ? "" : line.text.dropFirst(2)
                if try Self.splitKey(rest, line: line.number) != nil {
                    throw YAMLError(line: line.number, reason: "mappings inside sequences are outside the supported subset")
                }
                index += 1
                items.append(try value(rest, parentIndent: indent, line: line.number, sequenceAtSameIndent: false))
            }
            return .sequence(items)
        }

        /// The value after `key:` or `- `.
        private mutating func value(_ rest: Substring, parentIndent: Int, line: Int, sequenceAtSameIndent: Bool) throws -> YAMLNode {
            var text = Self.stripComment(rest).trimmingCharacters(in: .whitespaces)[...]
            var anchor: String?
            if text.hasPrefix("&") {
                let name = text.dropFirst().prefix(while: { !$0.isWhitespace })
                guard !name.isEmpty else { throw YAMLError(line: line, reason: "empty anchor name") }
                anchor = String(name)
                text = text.dropFirst(name.count + 1).drop(while: \.isWhitespace)
            }
            let node: YAMLNode
            if text.isEmpty {
                skipIgnorable()
                if index < lines.count,
                    lines[index].indent > parentIndent
                        || (sequenceAtSameIndent && lines[index].indent == parentIndent && Self.isSequenceItem(lines[index].text))
                {
                    node = try block(indent: lines[index].indent)
                } else {
                    node = .scalar("")
                }
            } else if text.hasPrefix("*") {
                let name = String(text.dropFirst())
                guard let target = anchors[name] else { throw YAMLError(line: line, reason: "unknown alias '*\(name)'") }
                node = target
            } else if text.hasPrefix("|") || text.hasPrefix(">") {
                node = .scalar(try blockScalar(indicator: text, parentIndent: parentIndent, line: line))
            } else if text.hasPrefix("[") {
                node = .sequence(try Self.flowSequence(text, line: line).map(YAMLNode.scalar))
            } else if text.hasPrefix("{") {
                throw YAMLError(line: line, reason: "flow mappings are outside the supported subset")
            } else {
                node = .scalar(try Self.unquote(text, line: line))
            }
            if let anchor { anchors[anchor] = node }
            return node
        }

        private mutating func blockScalar(indicator: Substring, parentIndent: Int, line: Int) throws -> String {
            let folded = indicator.hasPrefix(">")
            let chomping = indicator.dropFirst()
            guard ["", "-", "+"].contains(String(chomping)) else {
                throw YAMLError(line: line, reason: "block scalar indicator '\(indicator)' is outside the supported subset")
            }
            var body: [Line] = []
            while index < lines.count, lines[index].text.isEmpty || lines[index].indent > parentIndent {
                body.append(lines[index])
                index += 1
            }
            while let last = body.last, last.text.isEmpty { body.removeLast() }
            guard let contentIndent = body.first(where: { !$0.text.isEmpty })?.indent else { return "" }
            let texts = body.map { line -> String in
                line.text.isEmpty ? "" : String(repeating: " ", count: line.indent - contentIndent) + line.text
            }
            var result = folded
                ? texts.reduce(into: "") { folded, line in
                    if line.isEmpty { folded += "\n" } else { folded += (folded.isEmpty || folded.hasSuffix("\n") ? "" : " ") + line }
                }
                : texts.joined(separator: "\n")
            if chomping != "-" { result += "\n" }
            return result
        }

        /// `key: rest` when `text` is a mapping entry (the key may be quoted); nil otherwise.
        static func splitKey(_ text: Substring, line: Int) throws -> (String, Substring)? {
            var quote: Character?
            var position = text.startIndex
            while position < text.endIndex {
                let character = text[position]
                if let open = quote {
                    if character == open { quote = nil }
                } else if character == "\"" || character == "'", position == text.startIndex {
                    quote = character
                } else if character == "#", position == text.startIndex || text[text.index(before: position)] == " " {
                    return nil
                } else if character == ":" {
                    let next = text.index(after: position)
                    if next == text.endIndex || text[next] == " " {
                        let key = try unquote(text[..<position].trimmingCharacters(in: .whitespaces)[...], line: line)
                        return key.isEmpty ? nil : (key, text[next...])
                    }
                } else if character == "[" || character == "{", position == text.startIndex {
                    return nil
                }
                position = text.index(after: position)
            }
            return nil
        }

        /// `text` up to a comment: `#` at the start or after a space, outside quotes.
        static func stripComment(_ text: Substring) -> Substring {
            var quote: Character?
            var position = text.startIndex
            while position < text.endIndex {
                let character = text[position]
                if let open = quote {
                    if character == open { quote = nil }
                } else if character == "\"" || character == "'" {
                    quote = character
                } else if character == "#", position == text.startIndex || text[text.index(before: position)].isWhitespace {
                    return text[..<position]
                }
                position = text.index(after: position)
            }
            return text
        }

        static func unquote(_ text: Substring, line: Int) throws -> String {
            guard let first = text.first, first == "\"" || first == "'" else { return String(text) }
            guard text.count >= 2, text.last == first else {
                throw YAMLError(line: line, reason: "unterminated or multi-line quoted scalar \(text)")
            }
            let inner = text.dropFirst().dropLast()
            if first == "'" { return inner.replacingOccurrences(of: "''", with: "'") }
            var result = ""
            var escaped = false
            for character in inner {
                if escaped {
                    switch character {
                    case "n": result.append("\n")
                    case "t": result.append("\t")
                    default: result.append(character)
                    }
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else {
                    result.append(character)
                }
            }
            return result
        }

        /// `["a", "b", c]` → its items; nested collections are outside the subset.
        static func flowSequence(_ text: Substring, line: Int) throws -> [String] {
            guard text.hasSuffix("]") else { throw YAMLError(line: line, reason: "flow sequences must close on their line") }
            let inner = text.dropFirst().dropLast()
            var items: [String] = []
            var current = ""
            var quote: Character?
            for character in inner {
                if let open = quote {
                    current.append(character)
                    if character == open { quote = nil }
                } else if character == "\"" || character == "'" {
                    quote = character
                    current.append(character)
                } else if character == "," {
                    items.append(current)
                    current = ""
                } else if character == "[" || character == "{" {
                    throw YAMLError(line: line, reason: "nested flow collections are outside the supported subset")
                } else {
                    current.append(character)
                }
            }
            if quote != nil { throw YAMLError(line: line, reason: "unterminated quote in \(text)") }
            if !current.trimmingCharacters(in: .whitespaces).isEmpty || !items.isEmpty { items.append(current) }
            return try items.map { try unquote($0.trimmingCharacters(in: .whitespaces)[...], line: line) }
        }
    }

    /// Splits a command string into words as Compose does (shell-like quoting, no expansion).
    static func shellWords(_ command: String) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        for character in command {
            if let open = quote {
                if character == open { quote = nil } else { current.append(character) }
            } else if character == "\"" || character == "'" {
                quote = character
                inWord = true
            } else if character.isWhitespace {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(character)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    // MARK: - Dockerfile

    /// A Dockerfile as instructions: continuation lines joined, comment lines dropped.
    struct DockerfileModel {
        struct Instruction {
            var keyword: String
            var arguments: String
            var line: Int
            /// The index of the stage (`FROM`) it belongs to; -1 before the first FROM.
            var stage: Int
        }

        var instructions: [Instruction] = []
        var stageNames: [String] = []

        init(_ text: String) {
            var pending = ""
            var startLine = 0
            var stage = -1
            for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("#") { continue }
                if pending.isEmpty {
                    if line.isEmpty { continue }
                    startLine = offset + 1
                }
                if line.hasSuffix("\\") {
                    pending += line.dropLast() + " "
                    continue
                }
                pending += line
                let keyword = pending.prefix(while: { !$0.isWhitespace }).uppercased()
                let arguments = pending.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces)
                if keyword == "FROM" {
                    stage += 1
                    let words = arguments.split(separator: " ")
                    stageNames.append(words.count >= 3 && words[words.count - 2].uppercased() == "AS" ? String(words.last!) : "")
                }
                instructions.append(Instruction(keyword: keyword, arguments: arguments, line: startLine, stage: stage))
                pending = ""
            }
        }

        func all(_ keyword: String) -> [Instruction] { instructions.filter { $0.keyword == keyword } }

        /// The words of an exec-form (`["a", "b"]`) CMD/ENTRYPOINT; nil for the shell form.
        static func execForm(_ arguments: String) -> [String]? {
            guard arguments.hasPrefix("["), let data = arguments.data(using: .utf8),
                let words = try? JSONSerialization.jsonObject(with: data) as? [String]
            else { return nil }
            return words
        }

        /// The value of `ARG NAME=value` (quotes removed).
        func argument(_ name: String) -> String? {
            for instruction in all("ARG") where instruction.arguments.hasPrefix(name + "=") {
                var value = instruction.arguments.dropFirst(name.count + 1)
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
                return String(value)
            }
            return nil
        }
    }

    // MARK: - The checks

    enum PackagingChecks {
        /// Problems of one command line of the exchanger image: the executable is a product, an
        /// `exchanger` subcommand exists, every `--option` is declared, `--program` names a program.
        static func command(_ argv: [String], where place: String, _ facts: PackageFacts) -> [String] {
            guard let executable = argv.first else { return ["\(place): empty command"] }
            var problems: [String] = []
            let name = executable.split(separator: "/").last.map(String.init) ?? executable
            if !facts.executables.contains(name) {
                problems.append("\(place): '\(executable)' is not an executable product of Package.swift (\(facts.executables.sorted()))")
            }
            if name == "exchanger" {
                if argv.count < 2 || !facts.subcommands.contains(argv[1]) {
                    problems.append("\(place): 'exchanger \(argv.dropFirst().first ?? "")' is not an exchanger subcommand (\(facts.subcommands.sorted()))")
                }
            }
            for (offset, word) in argv.enumerated().dropFirst() where word.hasPrefix("--") {
                let option = String(word.prefix(while: { $0 != "=" }))
                if !facts.longOptions.contains(option) {
                    problems.append("\(place): option \(option) is declared by no @Option/@Flag in Sources/")
                }
                if option == "--program" {
                    let value = word.contains("=") ? String(word.drop(while: { $0 != "=" }).dropFirst()) : (offset + 1 < argv.count ? argv[offset + 1] : "")
                    if !facts.programs.contains(value) {
                        problems.append("\(place): --program '\(value)' is no processor's program (\(facts.programs.sorted()))")
                    }
                }
            }
            return problems
        }

        /// Problems of the variables `text` uses: each must be documented in README.md and read in Sources/.
        static func variables(in text: String, file: String, _ facts: PackageFacts) -> [String] {
            var problems: [String] = []
            for name in variableNames(in: text).sorted() {
                if !facts.readme.contains(name) { problems.append("\(file): \(name) is not documented in README.md") }
                if !facts.isRead(name) { problems.append("\(file): \(name) is read nowhere in Sources/") }
            }
            return problems
        }

        static func dockerfile(_ text: String, _ facts: PackageFacts) -> [String] {
            let file = DockerfileModel(text)
            var problems: [String] = []
            guard file.stageNames.count >= 2, let buildStage = file.stageNames.firstIndex(of: "build") else {
                return ["Dockerfile: expected a stage 'AS build' and a runtime stage after it"]
            }
            let runtimeStage = file.stageNames.count - 1
            if runtimeStage == buildStage { problems.append("Dockerfile: the last stage must be the runtime stage, not build") }

            // The build: every executable product, release, static Swift runtime, stripped.
            let listed = Set((file.argument("PRODUCTS") ?? "").split(separator: " ").map(String.init))
            if listed != facts.executables {
                problems.append(
                    "Dockerfile: ARG PRODUCTS lists \(listed.sorted()) but Package.swift's executable products are \(facts.executables.sorted())")
            }
            let builds = file.all("RUN").filter { $0.stage == buildStage && $0.arguments.contains("swift build") }
            if !builds.contains(where: {
                $0.arguments.contains("-c release") && $0.arguments.contains("--static-swift-stdlib")
                    && ($0.arguments.contains("$PRODUCTS") || $0.arguments.contains("${PRODUCTS}")) && $0.arguments.contains("strip")
            }) {
                problems.append("Dockerfile: no RUN builds every $PRODUCTS with `swift build -c release --static-swift-stdlib` and strips them")
            }
            let buildInstalls = file.all("RUN").filter { $0.stage == buildStage }.map(\.arguments).joined(separator: " ")
            for package in ["libpq-dev", "libsqlite3-dev"] where !buildInstalls.contains(package) {
                problems.append("Dockerfile: the build stage does not install \(package)")
            }
            // Layer caching: the manifest and `swift package resolve` before the sources.
            let order = file.instructions.filter { $0.stage == buildStage }
            let resolve = order.firstIndex { $0.keyword == "RUN" && $0.arguments.contains("swift package resolve") }
            let manifest = order.firstIndex { $0.keyword == "COPY" && $0.arguments.contains("Package.") }
            let sources = order.firstIndex { $0.keyword == "COPY" && $0.arguments.hasPrefix(". ") }
            if resolve == nil || manifest == nil || sources == nil || !(manifest! < resolve! && resolve! < sources!) {
                problems.append("Dockerfile: expected COPY Package.* → RUN swift package resolve → COPY . . in the build stage")
            }

            // The runtime stage: every product copied to /usr/local/bin, and nothing else.
            var copied: Set<String> = []
            for copy in file.all("COPY") where copy.stage == runtimeStage && copy.arguments.hasPrefix("--from=build") {
                let words = copy.arguments.split(separator: " ").dropFirst().map(String.init)
                if words.last != "/usr/local/bin/" { problems.append("Dockerfile:\(copy.line): binaries go to /usr/local/bin/") }
                for source in words.dropLast() {
                    let name = source.split(separator: "/").last.map(String.init) ?? source
                    copied.insert(name)
                }
            }
            if copied != facts.executables {
                problems.append("Dockerfile: the runtime stage copies \(copied.sorted()) but the executable products are \(facts.executables.sorted())")
            }
            let runtimeRuns = file.all("RUN").filter { $0.stage == runtimeStage }.map(\.arguments).joined(separator: " ")
            for package in ["libpq5", "libsqlite3-0", "libxml2", "ca-certificates", "tzdata"] where !runtimeRuns.contains(package) {
                problems.append("Dockerfile: the runtime stage does not install \(package)")
            }
            if !file.all("COPY").contains(where: { $0.stage == runtimeStage && $0.arguments == "docker/supervisor.conf /etc/exchanger/supervisor.conf" }) {
                problems.append("Dockerfile: docker/supervisor.conf is not copied to /etc/exchanger/supervisor.conf")
            }
            let users = file.all("USER").filter { $0.stage == runtimeStage }
            if users.isEmpty || users.contains(where: { ["root", "0"].contains($0.arguments.split(separator: ":").first.map(String.init) ?? "") }) {
                problems.append("Dockerfile: the runtime stage must run as a non-root USER")
            }
            if file.all("STOPSIGNAL").last?.arguments != "SIGTERM" { problems.append("Dockerfile: STOPSIGNAL SIGTERM is missing") }
            guard let health = file.all("HEALTHCHECK").last, health.stage == runtimeStage, health.arguments.contains("CMD") else {
                problems.append("Dockerfile: the runtime stage has no HEALTHCHECK CMD")
                return problems
            }
            if health.arguments.contains("curl"), !runtimeRuns.contains("curl") {
                problems.append("Dockerfile: the HEALTHCHECK uses curl, which the runtime stage does not install")
            }

            // What the image runs.
            for keyword in ["CMD", "ENTRYPOINT"] {
                for instruction in file.all(keyword) where instruction.stage == runtimeStage {
                    guard let argv = DockerfileModel.execForm(instruction.arguments) else {
                        problems.append("Dockerfile:\(instruction.line): \(keyword) must use the exec form [\"…\"] (PID 1 gets the signals)")
                        continue
                    }
                    problems += command(argv, where: "Dockerfile:\(instruction.line) \(keyword)", facts)
                }
            }
            return problems
        }

        /// The services built from docker/Dockerfile, or using the image such a service builds.
        static func exchangerServices(_ compose: YAMLNode) -> [YAMLNode.Entry] {
            let services = compose["services"]?.entries ?? []
            let built = services.filter { $0.value["build"]?["dockerfile"]?.string == "docker/Dockerfile" }
            let images = Set(built.compactMap { $0.value["image"]?.string })
            return services.filter { service in
                service.value["build"]?["dockerfile"]?.string == "docker/Dockerfile" || images.contains(service.value["image"]?.string ?? "\u{0}")
            }
        }

        /// The argv a service runs: its `command` (list or string), after its `entrypoint` when it has one.
        static func argv(of service: YAMLNode, defaultCommand: [String]) -> [String] {
            func words(_ node: YAMLNode?) -> [String]? {
                guard let node else { return nil }
                if let text = node.string { return shellWords(text) }
                return node.items.compactMap(\.string)
            }
            let command = words(service["command"]) ?? defaultCommand
            return (words(service["entrypoint"]) ?? []) + command
        }

        static func compose(_ compose: YAMLNode, dockerfileCommand: [String], _ facts: PackageFacts) -> [String] {
            var problems: [String] = []
            let services = compose["services"]?.entries ?? []
            if services.isEmpty { return ["compose.yaml: no services"] }
            let exchanger = exchangerServices(compose)
            if exchanger.isEmpty { problems.append("compose.yaml: no service builds docker/Dockerfile") }
            let exchangerNames = Set(exchanger.map(\.key))

            for service in services {
                if service.value["container_name"] != nil {
                    problems.append("compose.yaml: service \(service.key) has a container_name (it could not be scaled)")
                }
                if let dependencies = service.value["depends_on"] {
                    let names = dependencies.entries.isEmpty ? dependencies.items.compactMap(\.string) : dependencies.keys
                    for name in names where !services.contains(where: { $0.key == name }) {
                        problems.append("compose.yaml: service \(service.key) depends on unknown service \(name)")
                    }
                }
            }
            for service in exchanger {
                if service.value["ports"] != nil {
                    problems.append("compose.yaml: service \(service.key) publishes host ports (replicas would collide; scale with --scale)")
                }
                let argv = argv(of: service.value, defaultCommand: dockerfileCommand)
                problems += command(argv, where: "compose.yaml service \(service.key)", facts)
                if argv.contains("--queue") {
                    problems.append("compose.yaml: service \(service.key) is bound to one queue; container workers run unbound (--program)")
                }
            }
            // Each worker program that exists runs unbound in its own scalable service.
            let unbound = Set(exchanger.compactMap { service -> String? in
                let argv = argv(of: service.value, defaultCommand: dockerfileCommand)
                guard let flag = argv.firstIndex(of: "--program"), flag + 1 < argv.count else { return nil }
                return argv[flag + 1]
            })
            if !unbound.contains("s3-copy") { problems.append("compose.yaml: no service runs `exchanger-s3-copy --program s3-copy`") }

            // Secrets: declared, files under ./secrets/.
            let declared = compose["secrets"]?.entries ?? []
            for service in services {
                for secret in service.value["secrets"]?.items ?? [] {
                    guard let name = secret.string else {
                        problems.append("compose.yaml: service \(service.key) names a secret in a form outside the subset")
                        continue
                    }
                    if !declared.contains(where: { $0.key == name }) {
                        problems.append("compose.yaml: service \(service.key) uses secret \(name), which the top-level secrets do not declare")
                    }
                }
                for file in service.value["env_file"]?.items.compactMap(\.string) ?? [] where !file.hasPrefix("./secrets/") {
                    problems.append("compose.yaml: service \(service.key) reads env_file \(file) outside ./secrets/")
                }
            }
            for secret in declared {
                guard let file = secret.value["file"]?.string else {
                    problems.append("compose.yaml: secret \(secret.key) is not a file")
                    continue
                }
                if !file.hasPrefix("./secrets/") { problems.append("compose.yaml: secret \(secret.key) is not under ./secrets/ (\(file))") }
            }

            // Health checks.
            for (name, probe) in [("postgres", "pg_isready"), ("minio", "ready"), ("supervisor", "/readyz")] {
                guard let service = compose["services"]?[name] else {
                    problems.append("compose.yaml: no service \(name)")
                    continue
                }
                let check = service["healthcheck"]
                let test = check?["test"].map { $0.string ?? $0.items.compactMap(\.string).joined(separator: " ") } ?? ""
                if check?["disable"]?.string == "true" || test.isEmpty || test.hasPrefix("NONE") {
                    problems.append("compose.yaml: service \(name) has no health check")
                } else if !test.contains(probe) {
                    problems.append("compose.yaml: the health check of \(name) does not use \(probe): \(test)")
                }
            }
            if let supervisor = exchanger.first(where: { $0.key == "supervisor" }) {
                let argv = argv(of: supervisor.value, defaultCommand: dockerfileCommand)
                if argv.first != "exchanger-supervisor" { problems.append("compose.yaml: service supervisor does not run exchanger-supervisor") }
            } else {
                problems.append("compose.yaml: the supervisor service does not use the exchanger image")
            }
            if !exchangerNames.contains("migrate") { problems.append("compose.yaml: no one-shot migrate service") }
            return problems
        }

        /// Secret files and env files the compose file names must be written by make-secrets.sh.
        static func secretsAreGenerated(_ compose: YAMLNode, script: String) -> [String] {
            let written = Set(matches(#"(?m)\b(?:write|secret)\s+([A-Za-z0-9._-]+)"#, in: script))
            var files = (compose["secrets"]?.entries ?? []).compactMap { $0.value["file"]?.string }
            for service in compose["services"]?.entries ?? [] { files += service.value["env_file"]?.items.compactMap(\.string) ?? [] }
            return files.compactMap { file in
                let name = file.split(separator: "/").last.map(String.init) ?? file
                return written.contains(name) ? nil : "make-secrets.sh does not write \(name) (used by compose.yaml as \(file))"
            }
        }

        /// docker/supervisor.conf, read by the real parser: container settings, and every program's
        /// command a real executable with real options.
        static func supervisorConfiguration(_ configuration: SupervisorConfiguration, _ facts: PackageFacts) -> [String] {
            var problems: [String] = []
            if configuration.supervisor.httpHost != "0.0.0.0" {
                problems.append("supervisor.conf: http_host is \(configuration.supervisor.httpHost); in a container it must be 0.0.0.0")
            }
            if configuration.supervisor.logFile != nil { problems.append("supervisor.conf: logfile is set; containers log to stdout only") }
            if configuration.supervisor.brokerURL.contains("://") {
                problems.append("supervisor.conf: broker_url holds a URL; in containers it comes from the environment (a secret file)")
            }
            for program in configuration.programs {
                if program.stdoutLog != nil || program.stderrLog != nil {
                    problems.append("supervisor.conf: [program:\(program.name)] writes a log file; containers log to stdout only")
                }
                let context = program.expansionContext(
                    processNumber: 0, queue: program.scope == .perExchange ? "doc_exch_s3_copy_queue_2_7" : nil,
                    exchangeID: "exchange", deploymentID: "deployment", environment: [:])
                do {
                    let argv = try program.argv(context)
                    problems += command(argv, where: "supervisor.conf [program:\(program.name)]", facts)
                    if program.scope == .perExchange, !program.command.contains("%(queue)s") {
                        problems.append("supervisor.conf: per-exchange [program:\(program.name)] is not bound to its deployment's queue (%(queue)s)")
                    }
                } catch {
                    problems.append("supervisor.conf: [program:\(program.name)]: \(error)")
                }
            }
            return problems
        }
    }

    /// Seconds of a Compose duration such as `60s`, `1m30s`.
    static func composeSeconds(_ text: String) -> Double? {
        var total = 0.0
        var number = ""
        for character in text {
            if character.isNumber || character == "." {
                number.append(character)
            } else {
                guard let value = Double(number) else { return nil }
                switch character {
                case "h": total += value * 3600
                case "m": total += value * 60
                case "s": total += value
                default: return nil
                }
                number = ""
            }
        }
        return number.isEmpty ? total : nil
    }

    // MARK: - Tests

    @Suite("Container packaging (docker/)")
    struct ContainerPackagingTests {
        let facts: PackageFacts
        let compose: YAMLNode
        let composeText: String
        let dockerfileText: String
        let dockerCommand: [String]

        init() throws {
            facts = try PackageFacts.load()
            composeText = try Repository.read("docker/compose.yaml")
            compose = try MiniYAML.parse(composeText)
            dockerfileText = try Repository.read("docker/Dockerfile")
            let model = DockerfileModel(dockerfileText)
            dockerCommand = model.all("CMD").last.flatMap { DockerfileModel.execForm($0.arguments) } ?? []
        }

        @Test("the facts the checks rely on are read from the package")
        func factsAreRead() {
            #expect(facts.executables.isSuperset(of: ["exchanger", "exchanger-s3-copy", "exchanger-supervisor"]))
            #expect(facts.subcommands.isSuperset(of: ["migrate", "queues", "dlq"]))
            #expect(facts.longOptions.isSuperset(of: ["--program", "--queue", "--database", "--storage-url", "--metrics-port"]))
            #expect(facts.programs.isSuperset(of: ["s3-copy", "status-update", "dlq"]))
            #expect(PackageFacts.kebabCase("storageURL") == "storage-url")
            #expect(PackageFacts.kebabCase("noBroker") == "no-broker")
            #expect(PackageFacts.kebabCase("URLValue") == "url-value")
        }

        @Test("the Dockerfile builds and copies every executable product and runs like a container should")
        func dockerfile() {
            let problems = PackagingChecks.dockerfile(dockerfileText, facts)
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
            #expect(dockerCommand.first == "exchanger-supervisor")
        }

        @Test("compose.yaml runs real executables, scales its workers, declares its secrets, checks health")
        func composeFile() {
            let problems = PackagingChecks.compose(compose, dockerfileCommand: dockerCommand, facts)
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        }

        @Test("every EXCHANGER_* and AWS_* variable of docker/ is documented in README.md and read in Sources/")
        func variables() throws {
            var problems: [String] = []
            for file in ["docker/compose.yaml", "docker/Dockerfile", "docker/supervisor.conf", "docker/make-secrets.sh"] {
                problems += PackagingChecks.variables(in: try Repository.read(file), file: file, facts)
            }
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        }

        @Test("secrets live under docker/secrets/, are git-ignored, kept out of the build context, and generated")
        func secrets() throws {
            let problems = PackagingChecks.secretsAreGenerated(compose, script: try Repository.read("docker/make-secrets.sh"))
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")

            var paths = (compose["secrets"]?.entries ?? []).compactMap { $0.value["file"]?.string }
            for service in compose["services"]?.entries ?? [] { paths += service.value["env_file"]?.items.compactMap(\.string) ?? [] }
            #expect(!paths.isEmpty)
            for path in paths {
                let relative = "docker/" + path.dropFirst(2)
                #expect(try gitIgnores(relative), "\(relative) is not git-ignored")
            }
            #expect(try !gitIgnores("docker/secrets/README.md"), "docker/secrets/README.md should be committed")
            let dockerignore = try Repository.read(".dockerignore").split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(dockerignore.contains("docker/secrets"), ".dockerignore must keep docker/secrets out of the build context")
            #expect(dockerignore.contains(".build"), ".dockerignore must keep .build out of the build context")
            #expect(FileManager.default.isExecutableFile(atPath: Repository.path("docker/make-secrets.sh")))
        }

        /// `git check-ignore` on a path (it need not exist).
        func gitIgnores(_ relative: String) throws -> Bool {
            let git = Process()
            git.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            git.arguments = ["git", "-C", Repository.root.path, "check-ignore", "-q", "--no-index", relative]
            try git.run()
            git.waitUntilExit()
            #expect(git.terminationStatus == 0 || git.terminationStatus == 1, "git check-ignore failed (\(git.terminationStatus))")
            return git.terminationStatus == 0
        }

        @Test("docker/supervisor.conf parses with the real parser and fits containers")
        func supervisorConfiguration() throws {
            let configuration = try SupervisorConfiguration.load(path: Repository.path("docker/supervisor.conf"))
            let problems = PackagingChecks.supervisorConfiguration(configuration, facts)
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")

            // The orchestrator and the global processors run under the supervisor, and nowhere else.
            let global = Set(configuration.programs.filter { $0.scope == .global }.map(\.name))
            #expect(global == ["status-update", "dlq", "orchestrator"])
            for service in PackagingChecks.exchangerServices(compose) {
                let executable = PackagingChecks.argv(of: service.value, defaultCommand: dockerCommand).first ?? ""
                #expect(!["exchanger-status-update", "exchanger-dlq", "exchanger-orchestrator"].contains(executable),
                        "service \(service.key) runs \(executable), which the supervisor already runs")
            }
            #expect(configuration.program(named: "s3-copy")?.scope == .perExchange)

            // A stop drains before Docker's SIGKILL: stop_grace_period exceeds every wait.
            let grace = compose["services"]?["supervisor"]?["stop_grace_period"]?.string.flatMap(composeSeconds)
            #expect(grace != nil, "the supervisor service needs a stop_grace_period")
            if let grace {
                #expect(Double(configuration.supervisor.shutdownTimeout.components.seconds) < grace)
                for program in configuration.programs {
                    #expect(Double(program.stopWait.components.seconds) < grace, "[program:\(program.name)] stopwaitsecs ≥ stop_grace_period")
                }
            }
        }

        @Test("docker/supervisor.conf has the programs of the top-level supervisor.conf")
        func supervisorConfigurationMatchesTheHostOne() throws {
            let hostPath = Repository.path("supervisor.conf")
            try #require(FileManager.default.fileExists(atPath: hostPath), "the repository's supervisor.conf is missing")
            let host = try SupervisorConfiguration.load(path: hostPath)
            let container = try SupervisorConfiguration.load(path: Repository.path("docker/supervisor.conf"))
            func summary(_ configuration: SupervisorConfiguration) -> [String: String] {
                Dictionary(uniqueKeysWithValues: configuration.programs.map { program in
                    let executable = (try? program.argv(program.expansionContext(processNumber: 0, queue: "q", environment: [:])))?.first ?? "?"
                    return (program.name, "\(program.scope.rawValue) \(executable.split(separator: "/").last ?? "")")
                })
            }
            #expect(summary(container) == summary(host))
        }

        @Test("exchanger-supervisor --check accepts docker/supervisor.conf")
        func supervisorCheck() async throws {
            let child = try ChildProcess(
                executable: TestEnvironment.executable("exchanger-supervisor"),
                arguments: ["--config", Repository.path("docker/supervisor.conf"), "--check"])
            let output = try await child.readAll()
            let status = try await child.wait()
            #expect(status == 0, "exchanger-supervisor --check failed: \(output)")
            for program in ["status-update", "dlq", "s3-copy"] {
                #expect(output.contains(program), "--check did not list \(program): \(output)")
            }
        }

        // MARK: The checks can fail

        @Test("the compose checks reject broken variants")
        func composeChecksCanFail() throws {
            func problems(_ edit: (String) -> String) throws -> [String] {
                let broken = edit(composeText)
                #expect(broken != composeText, "the edit did not apply")
                return PackagingChecks.compose(try MiniYAML.parse(broken), dockerfileCommand: dockerCommand, facts)
                    + PackagingChecks.variables(in: broken, file: "compose.yaml", facts)
            }
            let s3Copy = #"command: ["exchanger-s3-copy", "--program", "s3-copy"]"#
            let cases: [(String, (String) -> String, String)] = [
                ("unknown executable", { $0.replacingOccurrences(of: s3Copy, with: #"command: ["exchanger-s3-kopy", "--program", "s3-copy"]"#) }, "not an executable product"),
                ("unknown subcommand", { $0.replacingOccurrences(of: #"["exchanger", "migrate"]"#, with: #"["exchanger", "migrat"]"#) }, "not an exchanger subcommand"),
                ("unknown option", { $0.replacingOccurrences(of: s3Copy, with: #"command: ["exchanger-s3-copy", "--programme", "s3-copy"]"#) }, "declared by no"),
                ("unknown program", { $0.replacingOccurrences(of: s3Copy, with: #"command: ["exchanger-s3-copy", "--program", "s3-kopy"]"#) }, "no processor's program"),
                ("bound worker", { $0.replacingOccurrences(of: s3Copy, with: #"command: ["exchanger-s3-copy", "--queue", "q"]"#) }, "bound to one queue"),
                ("container_name", { $0.replacingOccurrences(of: "  s3-copy:\n    <<: *exchanger\n", with: "  s3-copy:\n    <<: *exchanger\n    container_name: s3\n") }, "container_name"),
                ("published port", { $0.replacingOccurrences(of: "  s3-copy:\n    <<: *exchanger\n", with: "  s3-copy:\n    <<: *exchanger\n    ports:\n      - \"9101:9101\"\n") }, "publishes host ports"),
                ("undeclared secret", { $0.replacingOccurrences(of: "      - postgres-password\n    volumes:", with: "      - postgres-pasword\n    volumes:") }, "do not declare"),
                ("secret outside secrets/", { $0.replacingOccurrences(of: "file: ./secrets/postgres-password", with: "file: ./postgres-password") }, "not under ./secrets/"),
                ("no health check", { $0.replacingOccurrences(of: #"test: ["CMD", "mc", "ready", "local"]"#, with: "disable: true") }, "minio has no health check"),
                ("undocumented variable", { $0.replacingOccurrences(of: "  EXCHANGER_LOG_LEVEL: info\n", with: "  EXCHANGER_LOG_LEVEL: info\n  EXCHANGER_NO_SUCH_SETTING: x\n") }, "EXCHANGER_NO_SUCH_SETTING is not documented"),
            ]
            for (name, edit, expected) in cases {
                let found = try problems(edit)
                #expect(found.contains { $0.contains(expected) }, "\(name): expected a problem containing '\(expected)', got \(found)")
            }
        }

        @Test("the Dockerfile checks reject broken variants")
        func dockerfileChecksCanFail() {
            let cases: [(String, String, String, String)] = [
                ("product not built", " exchanger-search-text\"", "\"", "ARG PRODUCTS lists"),
                ("product not copied", "/staging/exchanger-search-text /usr/local/bin/", "/usr/local/bin/", "the runtime stage copies"),
                ("dynamic runtime", "--static-swift-stdlib --product", "--product", "static-swift-stdlib"),
                ("root user", "USER exchanger:exchanger", "USER root", "non-root USER"),
                ("stop signal", "STOPSIGNAL SIGTERM", "STOPSIGNAL SIGKILL", "STOPSIGNAL SIGTERM"),
                ("unknown CMD", #"CMD ["exchanger-supervisor""#, #"CMD ["exchanger-superviser""#, "not an executable product"),
                ("no libpq", "libpq5 ", "", "libpq5"),
            ]
            for (name, old, new, expected) in cases {
                let broken = dockerfileText.replacingOccurrences(of: old, with: new)
                #expect(broken != dockerfileText, "\(name): the edit did not apply")
                let found = PackagingChecks.dockerfile(broken, facts)
                #expect(found.contains { $0.contains(expected) }, "\(name): expected a problem containing '\(expected)', got \(found)")
            }
        }

        @Test("the supervisor.conf checks reject broken variants")
        func supervisorChecksCanFail() throws {
            let text = try Repository.read("docker/supervisor.conf")
            let cases: [(String, String, String, String)] = [
                ("loopback only", "http_host = 0.0.0.0", "http_host = 127.0.0.1", "must be 0.0.0.0"),
                ("log file", "[program:dlq]\n", "[program:dlq]\nstdout_logfile = /var/log/dlq.log\n", "writes a log file"),
                ("unknown executable", "command = exchanger-dlq\n", "command = exchanger-deadletters\n", "not an executable product"),
                ("unbound per-exchange", "command = exchanger-s3-copy --queue %(queue)s", "command = exchanger-s3-copy --program s3-copy", "%(queue)s"),
            ]
            for (name, old, new, expected) in cases {
                let broken = text.replacingOccurrences(of: old, with: new)
                #expect(broken != text, "\(name): the edit did not apply")
                let found = PackagingChecks.supervisorConfiguration(try SupervisorConfiguration.parse(broken, file: "supervisor.conf"), facts)
                #expect(found.contains { $0.contains(expected) }, "\(name): expected a problem containing '\(expected)', got \(found)")
            }
        }

        @Test("the YAML reader keeps to its subset")
        func yamlReader() throws {
            let node = try MiniYAML.parse("""
                x-env: &env
                  A: "1" # comment
                  B: 'it''s'
                s:
                  environment:
                    <<: *env
                    A: two
                  list: [a, "b c", 'd']
                  seq:
                  - x
                  - |
                    line 1
                      line 2
                  empty:
                """)
            #expect(node["s"]?["environment"] == .mapping([.init(key: "A", value: .scalar("two")), .init(key: "B", value: .scalar("it's"))]))
            #expect(node["s"]?["list"] == .sequence([.scalar("a"), .scalar("b c"), .scalar("d")]))
            #expect(node["s"]?["seq"] == .sequence([.scalar("x"), .scalar("line 1\n  line 2\n")]))
            #expect(node["s"]?["empty"] == .scalar(""))
            for unsupported in ["a: {b: c}", "a:\n  - b: c", "a: \"open", "a: *missing", "a: 1\na: 2", "a:\n\tb: c"] {
                #expect(throws: YAMLError.self, "\(unsupported)") { try MiniYAML.parse(unsupported) }
            }
        }

        // MARK: EXCHANGER_DATABASE_URL_FILE

        @Test("the broker URL comes from --database, EXCHANGER_DATABASE_URL, then EXCHANGER_DATABASE_URL_FILE")
        func databaseURLFile() throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exch-url-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("url").path
            try "  postgres://exchanger:secret@postgres:5432/exchanger\n".write(toFile: file, atomically: true, encoding: .utf8)

            #expect(try WorkerOptions.resolveDatabaseURL(option: nil, environment: ["EXCHANGER_DATABASE_URL_FILE": file])
                == "postgres://exchanger:secret@postgres:5432/exchanger")
            #expect(try WorkerOptions.resolveDatabaseURL(
                option: nil, environment: ["EXCHANGER_DATABASE_URL": "sqlite:///a.db", "EXCHANGER_DATABASE_URL_FILE": file]) == "sqlite:///a.db")
            #expect(try WorkerOptions.resolveDatabaseURL(
                option: "sqlite:///b.db", environment: ["EXCHANGER_DATABASE_URL": "sqlite:///a.db", "EXCHANGER_DATABASE_URL_FILE": file]) == "sqlite:///b.db")
            #expect(try WorkerOptions.resolveDatabaseURL(option: nil, environment: ["EXCHANGER_DATABASE_URL": "", "EXCHANGER_DATABASE_URL_FILE": file])
                == "postgres://exchanger:secret@postgres:5432/exchanger")

            // The workers' options use the same rule.
            let options = try WorkerOptions.parse([])
            #expect(try options.databaseURL(["EXCHANGER_DATABASE_URL_FILE": file]) == "postgres://exchanger:secret@postgres:5432/exchanger")

            // Errors name the variable: missing file, empty file, nothing set.
            let failures: [([String: String], String)] = [
                (["EXCHANGER_DATABASE_URL_FILE": directory.appendingPathComponent("missing").path], "cannot read EXCHANGER_DATABASE_URL_FILE"),
                (["EXCHANGER_DATABASE_URL_FILE": try empty(in: directory)], "is empty"),
                ([:], "EXCHANGER_DATABASE_URL_FILE"),
            ]
            for (environment, expected) in failures {
                do {
                    _ = try WorkerOptions.resolveDatabaseURL(option: nil, environment: environment)
                    Issue.record("expected an error for \(environment)")
                } catch {
                    #expect("\(error)".contains(expected), "\(error)")
                }
            }
        }

        private func empty(in directory: URL) throws -> String {
            let path = directory.appendingPathComponent("empty").path
            try "\n".write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        @Test("exchanger migrate reads the broker URL from EXCHANGER_DATABASE_URL_FILE")
        func cliReadsDatabaseURLFile() async throws {
            try await withTemporaryDirectory { directory in
                let file = directory.appendingPathComponent("exchanger-database-url").path
                try "sqlite://\(directory.path)/broker.sqlite\n".write(toFile: file, atomically: true, encoding: .utf8)
                let (status, output) = try await runExchanger(
                    ["migrate"], environment: ["EXCHANGER_DATABASE_URL": "", "EXCHANGER_DATABASE_URL_FILE": file])
                #expect(status == 0, "\(output)")
                #expect(output.contains("applied migrations") || output.contains("up to date"), "\(output)")
                #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("broker.sqlite").path))
            }
        }

        /// The container's supervisor gets the broker URL the way every other process there does: from
        /// the secret file named by EXCHANGER_DATABASE_URL_FILE (docker/supervisor.conf has no broker_url).
        @Test("exchanger-supervisor reads the broker URL from EXCHANGER_DATABASE_URL_FILE")
        func supervisorReadsDatabaseURLFile() async throws {
            try await withTemporaryDirectory { directory in
                let file = directory.appendingPathComponent("exchanger-database-url").path
                try "sqlite://\(directory.path)/broker.sqlite\n".write(toFile: file, atomically: true, encoding: .utf8)
                let environment = ["EXCHANGER_DATABASE_URL": "", "EXCHANGER_DATABASE_URL_FILE": file]
                let migrated = try await runExchanger(["migrate"], environment: environment)
                try #require(migrated.status == 0, "\(migrated.output)")
                let configuration = directory.appendingPathComponent("supervisor.conf").path
                try "[supervisor]\nhttp_port = 0\n".write(toFile: configuration, atomically: true, encoding: .utf8)

                let child = try ChildProcess(
                    executable: TestEnvironment.executable("exchanger-supervisor"), arguments: ["--config", configuration],
                    environment: environment)
                let watchdog = Task {
                    try await Task.sleep(for: .seconds(20))
                    child.signal(SIGKILL)
                }
                var output: [String] = []
                var started = false
                for try await line in child.lines() {
                    output.append(line)
                    if line.contains("supervisor started") {
                        started = true
                        break
                    }
                }
                if started { child.signal(SIGTERM) }
                let status = try await child.wait()
                watchdog.cancel()
                #expect(started, """
                    exchanger-supervisor did not start with only EXCHANGER_DATABASE_URL_FILE set (exit \(status)); \
                    SupervisorCommand must resolve the broker URL with WorkerOptions.resolveDatabaseURL. Output: \(output)
                    """)
                if started { #expect(status == 0) }
            }
        }
    }
}
