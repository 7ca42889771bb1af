/// The values of supervisord-style `%(name)s` expansions for one process instance.
///
/// Names: `program_name`, `process_num` (the instance index, from 0), `queue`, `exchange_id`,
/// `deployment_id` (the last two empty for global programs), `here` (the directory of the
/// configuration file), `host_node_name`, and `ENV_X` for the supervisor's environment variable X.
public struct ExpansionContext: Sendable, Equatable {
    /// `%(program_name)s`.
    public var programName: String
    /// `%(process_num)d`: the instance index, from 0.
    public var processNumber: Int
    /// `%(queue)s`: the deployment's queue, or the `queue` of a global program; empty when nil.
    public var queue: String?
    /// `%(exchange_id)s`: empty when nil (global programs).
    public var exchangeID: String?
    /// `%(deployment_id)s`: empty when nil (global programs).
    public var deploymentID: String?
    /// `%(here)s`: the directory of the configuration file.
    public var here: String
    /// `%(host_node_name)s`.
    public var hostName: String
    /// The supervisor's environment, for `%(ENV_X)s`.
    public var environment: [String: String]

    /// Creates a context.
    public init(
        programName: String,
        processNumber: Int = 0,
        queue: String? = nil,
        exchangeID: String? = nil,
        deploymentID: String? = nil,
        here: String,
        hostName: String,
        environment: [String: String] = [:]
    ) {
        self.programName = programName
        self.processNumber = processNumber
        self.queue = queue
        self.exchangeID = exchangeID
        self.deploymentID = deploymentID
        self.here = here
        self.hostName = hostName
        self.environment = environment
    }
}

/// Why a template or a command line was rejected; callers turn it into a ``ConfigurationError``.
struct TemplateFailure: Error, Sendable, Equatable, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}

/// A string with supervisord-style expansions: `%(name)s`, `%(name)d`, a width (`%(process_num)02d`
/// pads with zeros, `%(process_num)3d` with spaces), and `%%` for a literal `%`. Any other `%` is an
/// error, as in supervisord.
struct CommandTemplate: Sendable, Hashable {
    /// The names every program template may use (besides `ENV_X`).
    static let programNames: Set<String> = [
        "program_name", "process_num", "queue", "exchange_id", "deployment_id", "here", "host_node_name",
    ]
    /// The names `[supervisor]` templates (`broker_url`, `logfile`) may use (besides `ENV_X`).
    static let supervisorNames: Set<String> = ["here", "host_node_name"]

    enum Part: Sendable, Hashable {
        case literal(String)
        /// `%(name)[0][width](s|d)`.
        case expansion(name: String, integer: Bool, width: Int, zeroPadded: Bool)
    }

    let text: String
    let parts: [Part]

    /// Parses `text`, accepting `allowedNames` and any `ENV_X`.
    init(_ text: String, allowedNames: Set<String> = CommandTemplate.programNames) throws(TemplateFailure) {
        self.text = text
        var parts: [Part] = []
        var literal = ""
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            index = text.index(after: index)
            guard character == "%" else {
                literal.append(character)
                continue
            }
            guard index < text.endIndex else {
                throw TemplateFailure(reason: "'%' at the end of '\(text)' (write '%%' for a literal '%')")
            }
            if text[index] == "%" {
                literal.append("%")
                index = text.index(after: index)
                continue
            }
            guard text[index] == "(" else {
                throw TemplateFailure(reason: "'%' must be followed by '(name)s', '(name)d' or '%' in '\(text)'")
            }
            guard let close = text[index...].firstIndex(of: ")") else {
                throw TemplateFailure(reason: "unterminated '%(' in '\(text)'")
            }
            let name = String(text[text.index(after: index)..<close])
            index = text.index(after: close)
            var zeroPadded = false
            if index < text.endIndex, text[index] == "0" {
                zeroPadded = true
                index = text.index(after: index)
            }
            var digits = ""
            while index < text.endIndex, let digit = text[index].wholeNumberValue, text[index].isASCII, digits.count < 3 {
                digits.append(String(digit))
                index = text.index(after: index)
            }
            guard index < text.endIndex, text[index] == "s" || text[index] == "d" else {
                throw TemplateFailure(reason: "'%(\(name))' must be followed by 's' or 'd' (optionally a width, as in '%(process_num)02d') in '\(text)'")
            }
            let integer = text[index] == "d"
            index = text.index(after: index)

            let isEnvironment = name.hasPrefix("ENV_") && Self.isVariableName(name.dropFirst(4))
            guard isEnvironment || allowedNames.contains(name) else {
                let known = (allowedNames.sorted() + ["ENV_X"]).joined(separator: ", ")
                throw TemplateFailure(reason: "unknown expansion '%(\(name))' in '\(text)' (known: \(known))")
            }
            if integer && name != "process_num" {
                throw TemplateFailure(reason: "'%(\(name))d' is not a number; use '%(\(name))s' in '\(text)'")
            }
            if zeroPadded && !integer {
                throw TemplateFailure(reason: "zero padding applies to '%(process_num)d' only, in '\(text)'")
            }
            if !literal.isEmpty {
                parts.append(.literal(literal))
                literal = ""
            }
            parts.append(.expansion(name: name, integer: integer, width: Int(digits) ?? 0, zeroPadded: zeroPadded))
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        self.parts = parts
    }

    /// Parses and expands `text` (a program template) in one step. Prefer the
    /// ``ProgramConfiguration`` methods, whose errors name the file, section and key.
    static func expand(_ text: String, _ context: ExpansionContext) throws(TemplateFailure) -> String {
        try CommandTemplate(text).expand(context)
    }

    /// The names the template uses, in order.
    var names: [String] {
        parts.compactMap { part in
            if case .expansion(let name, _, _, _) = part { return name }
            return nil
        }
    }

    /// The text with every expansion replaced from `context`.
    func expand(_ context: ExpansionContext) throws(TemplateFailure) -> String {
        var result = ""
        for part in parts {
            switch part {
            case .literal(let text):
                result += text
            case .expansion(let name, let integer, let width, let zeroPadded):
                var value: String
                switch name {
                case "program_name": value = context.programName
                case "process_num": value = String(context.processNumber)
                case "queue": value = context.queue ?? ""
                case "exchange_id": value = context.exchangeID ?? ""
                case "deployment_id": value = context.deploymentID ?? ""
                case "here": value = context.here
                case "host_node_name": value = context.hostName
                default:
                    let variable = String(name.dropFirst(4))
                    guard let environmentValue = context.environment[variable] else {
                        throw TemplateFailure(reason: "environment variable '\(variable)' is not set (used as '%(\(name))s' in '\(text)')")
                    }
                    value = environmentValue
                }
                if value.count < width {
                    let padding = String(repeating: zeroPadded ? "0" : " ", count: width - value.count)
                    if integer && zeroPadded && value.hasPrefix("-") {
                        value = "-" + padding + value.dropFirst()
                    } else {
                        value = padding + value
                    }
                }
                result += value
            }
        }
        return result
    }

    /// Whether `name` matches `^[A-Za-z_][A-Za-z0-9_]*$`.
    static func isVariableName(_ name: Substring) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    /// Splits a command line into words the way a POSIX shell (and Python's `shlex.split`) does,
    /// without running a shell: words are separated by unquoted spaces, tabs and newlines; `'…'`
    /// keeps everything literally; in `"…"` a backslash escapes only `"` and `\`; outside quotes a
    /// backslash escapes any character, and backslash-newline joins lines. `''` is an empty word.
    /// No globbing, no variables, no comments.
    static func splitWords(_ command: String) throws(TemplateFailure) -> [String] {
        enum Quote { case none, single, double }
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote = Quote.none
        var index = command.startIndex
        while index < command.endIndex {
            let character = command[index]
            index = command.index(after: index)
            switch quote {
            case .none:
                switch character {
                case " ", "\t", "\n", "\r", "\r\n":
                    if inWord {
                        words.append(current)
                        current = ""
                        inWord = false
                    }
                case "'":
                    quote = .single
                    inWord = true
                case "\"":
                    quote = .double
                    inWord = true
                case "\\":
                    guard index < command.endIndex else {
                        throw TemplateFailure(reason: "command line '\(command)' ends with a backslash")
                    }
                    let escaped = command[index]
                    index = command.index(after: index)
                    if escaped == "\n" || escaped == "\r\n" { continue }
                    current.append(escaped)
                    inWord = true
                default:
                    current.append(character)
                    inWord = true
                }
            case .single:
                if character == "'" { quote = .none } else { current.append(character) }
            case .double:
                if character == "\"" {
                    quote = .none
                } else if character == "\\", index < command.endIndex, command[index] == "\"" || command[index] == "\\" {
                    current.append(command[index])
                    index = command.index(after: index)
                } else {
                    current.append(character)
                }
            }
        }
        guard quote == .none else {
            throw TemplateFailure(reason: "unterminated \(quote == .single ? "single" : "double") quote in '\(command)'")
        }
        if inWord { words.append(current) }
        return words
    }
}
