// Static checks of the container packaging under docker/ against the package itself. The image
// build and the compose stack themselves are checked for real by scripts/container-test (podman:
// build, up, scale, kill, verify, down); what remains static is here, with docker/compose.yaml and
// docker/compose.podman.yaml parsed by a real YAML library (Yams). Every check collects problems as
// strings, so a failure names the file, the service and what is wrong; the "…CanFail" tests feed
// each check a broken variant and expect it to complain.
//
// What is checked:
// - every command of docker/compose.yaml (services and health checks) and docker/supervisor.conf
//   runs an executable product, with real `exchanger` subcommands, real long options and real
//   programs;
// - every EXCHANGER_* / AWS_* variable given to the processes there is documented in docs/configuration.md and
//   read in Sources/; the compose files' own settings (`${EXCHANGER_…}`) are documented in
//   docs/containers.md;
// - no service has a container_name and no service of the exchanger image publishes a port (so each
//   one scales; only the podman override publishes loopback ports, for the host's test);
// - the exchanger services run read-only, without capabilities, with no-new-privileges and a tmpfs
//   for /tmp, and probe health with `exchanger health` (the image has no curl);
// - every secret is declared, lives under docker/secrets/ (git-ignored) and is written by
//   docker/make-secrets.sh; postgres, minio and supervisor have health checks;
// - docker/compose.podman.yaml only overrides services of docker/compose.yaml, and builds the
//   runtime-prebuilt target of docker/Dockerfile, which exists;
// - docker/supervisor.conf parses with the real parser (SupervisorConfiguration.load) and
//   `exchanger-supervisor --check` accepts it;
// - EXCHANGER_DATABASE_URL_FILE (the broker URL as a secret file) works for the workers' options,
//   `exchanger migrate` and `exchanger-supervisor`.
import ExchangerTestSupport
import Foundation
import ProcessSupport
import Supervisor
import Testing
import WorkerRuntime
import Yams
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
        /// docs/configuration.md, the settings reference.
        var configuration: String

        static func load() throws -> PackageFacts {
            let manifest = try Repository.read("Package.swift")
            let sources = try Repository.swiftSources()
            return PackageFacts(
                executables: Set(matches(#"\.executable\(\s*name:\s*"([^"]+)""#, in: manifest)),
                subcommands: try exchangerSubcommands(sources),
                longOptions: longOptions(sources),
                programs: Set(sources.flatMap { matches(#"static let program\s*=\s*"([^"]+)""#, in: $0.text) }),
                code: Dictionary(uniqueKeysWithValues: sources.map { ($0.path, codeOnly($0.text)) }),
                configuration: try Repository.read("docs/configuration.md")
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

    // MARK: - YAML, read with Yams

    /// A YAML value of a compose file, as the checks use it: scalars as text, sequences, and
    /// mappings in file order with merge keys (`<<: *anchor`) applied.
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

        /// Parses a whole document with Yams (anchors and aliases resolved by it).
        static func parse(_ text: String) throws -> YAMLNode {
            guard let node = try Yams.compose(yaml: text) else { return .mapping([]) }
            return try YAMLNode(node)
        }

        init(_ node: Yams.Node) throws {
            switch node {
            case .scalar(let scalar):
                self = .scalar(scalar.string)
            case .sequence(let sequence):
                self = .sequence(try sequence.map(YAMLNode.init))
            case .mapping(let mapping):
                var entries: [Entry] = []
                var merged: [Entry] = []
                for (key, value) in mapping {
                    guard let name = key.string else { throw YAMLError(reason: "a mapping key that is not a scalar") }
                    if name == "<<" {
                        // Merge keys: the aliased mapping(s) provide defaults for this one.
                        let sources = value.sequence.map(Array.init) ?? [value]
                        for source in sources { merged += try YAMLNode(source).entries }
                        continue
                    }
                    if entries.contains(where: { $0.key == name }) { throw YAMLError(reason: "duplicate key \(name)") }
                    entries.append(Entry(key: name, value: try YAMLNode(value)))
                }
                for entry in merged where !entries.contains(where: { $0.key == entry.key }) { entries.append(entry) }
                self = .mapping(entries)
            }
        }
    }

    struct YAMLError: Error, CustomStringConvertible {
        var reason: String
        var description: String { "YAML: \(reason)" }
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

    /// The exec-form words of the Dockerfile's last `CMD [...]` (the default command of the image).
    /// The Dockerfile itself is checked by building it (scripts/container-test).
    static func dockerfileCommand(_ text: String) -> [String] {
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("CMD [") }),
            let words = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(4).utf8)) as? [String]
        else { return [] }
        return words
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

        /// Problems of the variables `text` uses: each must be documented in docs/configuration.md and
        /// read in Sources/.
        static func variables(in text: String, file: String, _ facts: PackageFacts) -> [String] {
            var problems: [String] = []
            for name in variableNames(in: text).sorted() {
                if !facts.configuration.contains("`\(name)`") {
                    problems.append("\(file): \(name) is not documented in docs/configuration.md")
                }
                if !facts.isRead(name) { problems.append("\(file): \(name) is read nowhere in Sources/") }
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
                // Least privilege.
                let value = service.value
                if value["read_only"]?.string != "true" {
                    problems.append("compose.yaml: service \(service.key) has a writable root filesystem (read_only: true)")
                }
                if !(value["tmpfs"]?.items.compactMap(\.string).contains("/tmp") ?? false) && value["tmpfs"]?.string != "/tmp" {
                    problems.append("compose.yaml: service \(service.key) has no tmpfs on /tmp for scratch files")
                }
                if value["cap_drop"]?.items.compactMap(\.string) != ["ALL"] {
                    problems.append("compose.yaml: service \(service.key) keeps capabilities (cap_drop: [ALL])")
                }
                if !(value["security_opt"]?.items.compactMap(\.string).contains { $0.hasPrefix("no-new-privileges") } ?? false) {
                    problems.append("compose.yaml: service \(service.key) lacks security_opt no-new-privileges")
                }
                // Health with the image's own probe: `exchanger health …`, no curl.
                if let check = value["healthcheck"], check["disable"]?.string != "true" {
                    let test = check["test"]?.items.compactMap(\.string) ?? []
                    if test.first != "CMD" {
                        problems.append("compose.yaml: the health check of \(service.key) must be [\"CMD\", \"exchanger\", \"health\", …] (the image has no shell tools for it)")
                    } else {
                        problems += command(Array(test.dropFirst()), where: "compose.yaml service \(service.key) healthcheck", facts)
                        if test.dropFirst().first != "exchanger" || !test.contains("health") {
                            problems.append("compose.yaml: the health check of \(service.key) does not use `exchanger health`")
                        }
                    }
                }
            }
            // Unbound workers scale by replica count.
            for name in ["s3-copy", "uploader"] {
                if let service = compose["services"]?[name], service["scale"] == nil {
                    problems.append("compose.yaml: service \(name) has no scale setting")
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

        /// docker/compose.podman.yaml: overrides services that docker/compose.yaml has, builds the
        /// Dockerfile's runtime-prebuilt target (which must exist), publishes loopback ports only.
        static func podmanOverride(_ override: YAMLNode, base: YAMLNode, dockerfile: String) -> [String] {
            var problems: [String] = []
            let baseServices = Set(base["services"]?.keys ?? [])
            let services = override["services"]?.entries ?? []
            if services.isEmpty { problems.append("compose.podman.yaml: no services") }
            let stages = Set(matches(#"(?m)^FROM\s+\S+\s+AS\s+(\S+)"#, in: dockerfile))
            for service in services {
                if !baseServices.contains(service.key) {
                    problems.append("compose.podman.yaml: service \(service.key) is not a service of compose.yaml")
                }
                if let build = service.value["build"], build["dockerfile"]?.string == "docker/Dockerfile" {
                    let target = build["target"]?.string ?? ""
                    if target != "runtime-prebuilt" || !stages.contains(target) {
                        problems.append("compose.podman.yaml: service \(service.key) builds target '\(target)', not the Dockerfile's runtime-prebuilt stage")
                    }
                }
                for port in service.value["ports"]?.items.compactMap(\.string) ?? [] where !port.hasPrefix("127.0.0.1:") {
                    problems.append("compose.podman.yaml: service \(service.key) publishes \(port) beyond the loopback address")
                }
            }
            return problems
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
            compose = try YAMLNode.parse(composeText)
            dockerfileText = try Repository.read("docker/Dockerfile")
            dockerCommand = dockerfileCommand(dockerfileText)
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

        @Test("the image's default command is the supervisor; docker/compose.podman.yaml only overrides what podman needs")
        func podmanOverride() throws {
            #expect(dockerCommand == ["exchanger-supervisor", "--config", "/etc/exchanger/supervisor.conf"])
            let override = try YAMLNode.parse(try Repository.read("docker/compose.podman.yaml"))
            let problems = PackagingChecks.podmanOverride(override, base: compose, dockerfile: dockerfileText)
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
            #expect(override["services"]?["supervisor"]?["ports"] != nil, "the override publishes the orchestrator's port for the host")
        }

        @Test("compose.yaml runs real executables, scales its workers, declares its secrets, checks health")
        func composeFile() {
            let problems = PackagingChecks.compose(compose, dockerfileCommand: dockerCommand, facts)
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        }

        @Test("every EXCHANGER_* and AWS_* variable of docker/ is documented in docs/configuration.md and read in Sources/")
        func variables() throws {
            var problems: [String] = []
            let guide = try Repository.read("docs/containers.md")
            for file in ["docker/compose.yaml", "docker/compose.podman.yaml", "docker/Dockerfile", "docker/supervisor.conf", "docker/make-secrets.sh"] {
                var text = try Repository.read(file)
                // `${NAME:-default}`: a setting of the compose file itself, documented with it.
                for name in Set(matches(#"\$\{((?:EXCHANGER|AWS)_[A-Z0-9_]*)"#, in: text)) {
                    if !guide.contains(name) { problems.append("\(file): \(name) is not documented in docs/containers.md") }
                    text = text.replacingOccurrences(of: name, with: "")
                }
                problems += PackagingChecks.variables(in: text, file: file, facts)
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

        @Test("exchanger-multicall serves every Swift executable by the name it is started as, and refuses other names")
        func multicall() async throws {
            let binary = TestEnvironment.executable("exchanger-multicall")
            let listing = try ChildProcess(executable: binary, arguments: ["--programs"])
            let programs = Set(try await listing.readAll().split(separator: "\n").map(String.init))
            #expect(try await listing.wait() == 0)
            // Every executable product but the C one (exchanger-exec) and itself.
            #expect(programs == facts.executables.subtracting(["exchanger-exec", "exchanger-multicall"]))

            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exch-multicall-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            for (name, expected) in [("exchanger-dlq", "dead"), ("exchanger-s3-copy", "s3-copy"), ("exchanger", "verify")] {
                let link = directory.appendingPathComponent(name).path
                try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: binary)
                let child = try ChildProcess(executable: link, arguments: ["--help"])
                let output = try await child.readAll()
                #expect(try await child.wait() == 0, "\(name) --help: \(output)")
                #expect(output.lowercased().contains(expected), "\(name) --help: \(output)")
            }
            let stranger = directory.appendingPathComponent("exchanger-nope").path
            try FileManager.default.createSymbolicLink(atPath: stranger, withDestinationPath: binary)
            let refused = try ChildProcess(executable: stranger, arguments: [], stderr: .discard)
            _ = try await refused.readAll()
            #expect(try await refused.wait() == 2)
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
                return PackagingChecks.compose(try YAMLNode.parse(broken), dockerfileCommand: dockerCommand, facts)
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
                ("writable root", { $0.replacingOccurrences(of: "  read_only: true\n", with: "  read_only: false\n") }, "writable root filesystem"),
                ("capabilities kept", { $0.replacingOccurrences(of: "  cap_drop:\n    - ALL\n", with: "") }, "keeps capabilities"),
                ("curl probe", { $0.replacingOccurrences(of: #"test: ["CMD", "exchanger", "health", "--quiet", "--port", "9101"]"#, with: #"test: ["CMD", "curl", "-fsS", "http://127.0.0.1:9101/healthz"]"#) }, "not an executable product"),
                ("unknown probe option", { $0.replacingOccurrences(of: #""--quiet", "--port", "9101"]"#, with: #""--quiet", "--portt", "9101"]"#) }, "declared by no"),
                ("no replicas", { $0.replacingOccurrences(of: "    scale: ${EXCHANGER_S3_COPY_REPLICAS:-1}\n", with: "") }, "s3-copy has no scale"),
                ("undocumented variable", { $0.replacingOccurrences(of: "  EXCHANGER_LOG_LEVEL: info\n", with: "  EXCHANGER_LOG_LEVEL: info\n  EXCHANGER_NO_SUCH_SETTING: x\n") }, "EXCHANGER_NO_SUCH_SETTING is not documented"),
            ]
            for (name, edit, expected) in cases {
                let found = try problems(edit)
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

        @Test("the podman override checks reject broken variants")
        func podmanOverrideChecksCanFail() throws {
            let text = try Repository.read("docker/compose.podman.yaml")
            let cases: [(String, String, String, String)] = [
                ("unknown service", "  migrate:\n", "  migrat:\n", "not a service of compose.yaml"),
                ("wrong target", "target: runtime-prebuilt", "target: runtime-host", "not the Dockerfile's runtime-prebuilt"),
                ("open port", "\"127.0.0.1:${EXCHANGER_API_PORT:-18080}:8080\"", "\"${EXCHANGER_API_PORT:-18080}:8080\"", "beyond the loopback"),
            ]
            for (name, old, new, expected) in cases {
                let broken = text.replacingOccurrences(of: old, with: new)
                #expect(broken != text, "\(name): the edit did not apply")
                let found = PackagingChecks.podmanOverride(try YAMLNode.parse(broken), base: compose, dockerfile: dockerfileText)
                #expect(found.contains { $0.contains(expected) }, "\(name): expected a problem containing '\(expected)', got \(found)")
            }
        }

        @Test("compose files are read by a real YAML parser: merge keys applied, malformed files refused")
        func yamlParsing() throws {
            let node = try YAMLNode.parse("""
                x-env: &env
                  A: "1" # comment
                  B: 'it''s'
                s:
                  environment:
                    <<: *env
                    A: two
                  flow: {a: 1, b: [x, "y z"]}
                  seq:
                  - x
                  - |
                    line 1
                      line 2
                """)
            #expect(node["s"]?["environment"] == .mapping([.init(key: "A", value: .scalar("two")), .init(key: "B", value: .scalar("it's"))]))
            #expect(node["s"]?["flow"]?["b"] == .sequence([.scalar("x"), .scalar("y z")]))
            #expect(node["s"]?["seq"] == .sequence([.scalar("x"), .scalar("line 1\n  line 2")]))  // clip: the text ends without a newline
            for malformed in ["a: \"open", "a: *missing", "a: 1\na: 2", "a:\n\tb: c", "a: [1, 2"] {
                #expect(throws: (any Error).self, "\(malformed)") { try YAMLNode.parse(malformed) }
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
