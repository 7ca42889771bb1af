import Foundation
import Testing

/// docs/configuration.md is the one table of every environment setting. These tests keep it
/// honest against Sources/: a setting added to the code without a row, or a row left behind for a
/// setting the code no longer reads, fails here.
@Suite("docs/configuration.md against Sources/")
struct ConfigurationReferenceTests {
    typealias Repository = ContainerPackaging.Repository

    /// `EXCHANGER_…` literals in Sources/ that are not environment settings.
    static let notSettings: Set<String> = [
        // Event types (ExchangerEvents), named as the reference system names them.
        "EXCHANGER_INITIATED", "EXCHANGER_FINISHED", "EXCHANGER_FAILED", "EXCHANGER_DELETE_INITIATED",
    ]

    /// The names in the first column of the document's tables, with how often each appears there.
    static func documentedNames() throws -> [String: Int] {
        let text = try Repository.read("docs/configuration.md")
        var counts: [String: Int] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let firstCell = String(line.dropFirst(1).prefix(while: { $0 != "|" }))
            for name in ContainerPackaging.matches(#"`((?:EXCHANGER|AWS)_[A-Z0-9_]+)`"#, in: firstCell) {
                counts[name, default: 0] += 1
            }
        }
        return counts
    }

    /// Every complete `"EXCHANGER_…"` / `"AWS_…"` string literal in the code of Sources/ (comments
    /// left out; a prefix such as `"EXCHANGER_SUPERVISOR_"` is not a name).
    static func namesInSources(_ facts: ContainerPackaging.PackageFacts) -> Set<String> {
        var names: Set<String> = []
        for code in facts.code.values {
            names.formUnion(ContainerPackaging.matches(#""((?:EXCHANGER|AWS)_[A-Z0-9_]*[A-Z0-9])""#, in: code))
        }
        return names.subtracting(notSettings)
    }

    @Test("every EXCHANGER_* and AWS_* name the code reads has a row")
    func everySettingIsDocumented() throws {
        let facts = try ContainerPackaging.PackageFacts.load()
        let documented = try Self.documentedNames()
        let missing = Self.namesInSources(facts).filter { documented[$0] == nil }.sorted()
        #expect(missing.isEmpty, "read in Sources/ but not in docs/configuration.md: \(missing.joined(separator: ", "))")
        // The scan itself must see the settings everyone knows are there.
        #expect(Self.namesInSources(facts).isSuperset(of: ["EXCHANGER_DATABASE_URL", "AWS_ACCESS_KEY_ID", "EXCHANGER_WORKER_BATCH_SIZE"]))
    }

    @Test("every row names a setting the code reads, and names it once")
    func everyRowIsRead() throws {
        let facts = try ContainerPackaging.PackageFacts.load()
        let documented = try Self.documentedNames()
        #expect(documented.count > 50, "docs/configuration.md lists only \(documented.count) settings")
        let stale = documented.keys.filter { !facts.isRead($0) }.sorted()
        #expect(stale.isEmpty, "in docs/configuration.md but read nowhere in Sources/: \(stale.joined(separator: ", "))")
        let twice = documented.filter { $0.value > 1 }.keys.sorted()
        #expect(twice.isEmpty, "more than one row: \(twice.joined(separator: ", "))")
        let notSettings = documented.keys.filter { Self.notSettings.contains($0) }.sorted()
        #expect(notSettings.isEmpty, "event types listed as settings: \(notSettings.joined(separator: ", "))")
    }

    @Test("README stays a newcomer's page: at most 200 lines, no link outside the repository")
    func readmeIsShort() throws {
        let readme = try Repository.read("README.md")
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: false).count
        #expect(lines <= 200, "README.md has \(lines) lines")
        for file in ["README.md"] + (try Self.docsPages()) {
            let text = try Repository.read(file)
            for target in ContainerPackaging.matches(#"\]\(([^)\s]+)\)"#, in: text) {
                #expect(!target.contains("://"), "\(file) links outside the repository: \(target)")
                let path = String(target.prefix(while: { $0 != "#" }))
                guard !path.isEmpty else { continue }
                let base = Repository.root.appendingPathComponent(file).deletingLastPathComponent()
                let resolved = base.appendingPathComponent(path).standardizedFileURL.path
                #expect(resolved.hasPrefix(Repository.root.standardizedFileURL.path + "/"), "\(file) links outside the repository: \(target)")
                #expect(FileManager.default.fileExists(atPath: resolved), "\(file) links to \(target), which does not exist")
            }
        }
    }

    /// docs/*.md, relative to the repository root.
    static func docsPages() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: Repository.path("docs"))
            .filter { $0.hasSuffix(".md") }.sorted().map { "docs/" + $0 }
    }
}
