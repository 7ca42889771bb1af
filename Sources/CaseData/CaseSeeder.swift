import CaseDatabase
import Crypto
import DatabaseSupport
import Foundation
import Logging
import ObjectStorage
import PostgresClient
import SQLiteClient

/// What ``CaseSeeder/seed(caseID:documents:seed:)`` wrote.
public struct CaseSeedReport: Sendable, Hashable, Codable {
    /// The seeded case.
    public var caseID: Int64
    /// The generator's seed.
    public var seed: UInt64
    /// Documents created.
    public var documents: Int
    /// The first and last new document id.
    public var firstDocumentID: Int64?
    public var lastDocumentID: Int64?
    /// Rows inserted per table.
    public var rows: [String: Int]
    /// Objects written to storage (three per document with a store, else 0).
    public var objects: Int
    /// Seconds the call took.
    public var seconds: Double

    /// All rows together.
    public var totalRows: Int { rows.values.reduce(0, +) }
}

/// Fills a case database with a realistic synthetic case: about 20 rows per document across the
/// case tables (variants, exhibit, custodian, labels in categories, folders, issues, custom field
/// values, confidentiality and relevancy logs), deterministic from a seed; optionally each
/// document's PDF rendition, native file and text file in object storage (``CaseKeys`` layout).
///
/// PostgreSQL rows go in with `COPY … FROM STDIN`, SQLite rows with prepared inserts, both in one
/// transaction. The case must have no documents yet.
public struct CaseSeeder: Sendable {
    /// Where the case databases are.
    public let databases: CaseDatabases
    /// Where document files go (nil: database rows only).
    public let store: (any ObjectStore)?
    /// Documents generated and written per round.
    public var documentsPerRound = 2_000
    /// Uploads in flight at once.
    public var uploadConcurrency = 16
    /// Least size of each PDF rendition in bytes (0: as small as the content allows, about 1–3 KB);
    /// benchmarks set 65,536 for realistic transfers.
    public var pdfBytes = 0
    private let logger: Logger

    /// A seeder writing rows through `databases` and, with a `store`, each document's files.
    public init(databases: CaseDatabases, store: (any ObjectStore)? = nil, logger: Logger = Logger(label: "exchanger.case-seed")) {
        self.databases = databases
        self.store = store
        self.logger = logger
    }

    /// The fixed vocabularies of a synthetic case.
    static let codeNames = ["Confidential", "Highly Confidential", "Attorneys' Eyes Only", "Privileged", "Trade Secret", "Redacted"]
    static let categoryNames = ["Responsiveness", "Privilege", "Hot Documents", "Key Issues"]
    static let labelNames = [
        "Responsive", "Attorney-Client", "Hot", "Contract", "Not Responsive", "Work Product", "Warm", "Fraud", "Needs Review",
        "Not Privileged", "Cold", "Damages",
    ]
    static let fieldDefinitions = [("Amount", "number"), ("Reviewer", "text"), ("Received", "date"), ("Page Estimate", "number"), ("Notes", "text")]
    static let folderNames = ["Inbox", "Production 001", "Production 002", "Depositions", "Experts", "Correspondence", "Contracts", "Archive"]
    static let issueNames = ["Breach of Contract", "Fraud", "Damages", "Jurisdiction", "Spoliation", "Privilege Waiver"]
    static let relevancies = ["relevant", "not_relevant", "needs_review"]

    /// Creates the case database if needed, migrates it and seeds it.
    /// - Throws: ``CaseDataError``: `.invalidArgument` when `documents` is not 1…10,000,000 or the
    ///   case already has documents; `.database`; `.storage`.
    public func seed(caseID: Int64, documents: Int, seed: UInt64 = 1) async throws -> CaseSeedReport {
        guard (1...10_000_000).contains(documents) else {
            throw CaseDataError(.invalidArgument, "the document count must be 1…10000000, not \(documents)")
        }
        let started = ContinuousClock.now
        try await databases.create(caseID: caseID)
        let connection = try await databases.open(caseID: caseID)
        var rows: [String: Int] = [:]
        let plan: SeedPlan
        do {
            let existing = try await connection.query("SELECT count(*) AS n FROM documents").first?["n"].int ?? 0
            guard existing == 0 else {
                throw CaseDataError(.invalidArgument, "case \(caseID) already has \(existing) documents; seed an empty case")
            }
            var bases: [String: Int64] = [:]
            for table in CaseSchema.dataTables {
                bases[table] = try await connection.query("SELECT coalesce(max(id), 0) AS m FROM \(CaseSQLConnection.quote(table))")
                    .first?["m"].int64 ?? 0
            }
            plan = SeedPlan(documents: documents, seed: seed, bases: bases, pdfBytes: pdfBytes)
            let round = max(1, documentsPerRound)
            rows = try await connection.transaction { connection in
                var counts: [String: Int] = [:]
                for table in plan.referenceTables() { counts[table.name, default: 0] += try await Self.write(table, connection) }
                var start = 0
                while start < documents {
                    let end = min(documents, start + round)
                    for table in plan.documentTables(start..<end) { counts[table.name, default: 0] += try await Self.write(table, connection) }
                    start = end
                }
                if connection.kind == .postgres {
                    for table in CaseSchema.dataTables {
                        let quoted = CaseSQLConnection.quote(table)
                        try await connection.query(
                            "SELECT setval(pg_get_serial_sequence($1, 'id'), (SELECT max(id) FROM \(quoted))) WHERE EXISTS (SELECT 1 FROM \(quoted))",
                            [.text(quoted)])
                    }
                }
                return counts
            }
            await connection.close()
        } catch {
            await connection.close()
            throw CaseDatabases.wrap(error, "case \(caseID): seeding failed")
        }
        var objects = 0
        if let store {
            objects = try await upload(plan: plan, caseID: caseID, store: store)
        }
        let elapsed = ContinuousClock.now - started
        let report = CaseSeedReport(
            caseID: caseID, seed: seed, documents: documents, firstDocumentID: plan.documentID(0), lastDocumentID: plan.documentID(documents - 1),
            rows: rows, objects: objects, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        logger.info("case seeded", metadata: ["caseId": "\(caseID)", "documents": "\(documents)", "rows": "\(report.totalRows)"])
        return report
    }

    // MARK: Writing

    private static func write(_ table: SeedTable, _ connection: CaseSQLConnection) async throws -> Int {
        guard !table.rows.isEmpty else { return 0 }
        let quoted = table.columns.map(CaseSQLConnection.quote).joined(separator: ", ")
        switch connection {
        case .postgres(let postgres):
            var text = ""
            text.reserveCapacity(table.rows.count * 96)
            for row in table.rows {
                text += row.map(copyText).joined(separator: "\t")
                text += "\n"
            }
            let bytes = Array(text.utf8)
            let source = AsyncStream<[UInt8]> { continuation in
                var offset = 0
                while offset < bytes.count {
                    continuation.yield(Array(bytes[offset..<min(bytes.count, offset + 256 * 1024)]))
                    offset += 256 * 1024
                }
                continuation.finish()
            }
            return try await postgres.copyIn("COPY \(CaseSQLConnection.quote(table.name)) (\(quoted)) FROM STDIN", from: source)
        case .sqlite(let sqlite):
            let placeholders = (1...table.columns.count).map { "?\($0)" }.joined(separator: ", ")
            let sql = "INSERT INTO \(CaseSQLConnection.quote(table.name)) (\(quoted)) VALUES (\(placeholders))"
            for row in table.rows { try await sqlite.update(sql, row) }
            return table.rows.count
        }
    }

    /// A value in COPY's text format.
    static func copyText(_ value: SQLValue) -> String {
        switch value {
        case .null: return "\\N"
        case .integer(let value): return String(value)
        case .double(let value): return String(value)
        case .bool(let value): return value ? "t" : "f"
        case .blob(let bytes): return "\\\\x" + bytes.map { String(format: "%02x", $0) }.joined()
        case .text(let text):
            var escaped = ""
            escaped.reserveCapacity(text.utf8.count)
            for character in text {
                switch character {
                case "\\": escaped += "\\\\"
                case "\t": escaped += "\\t"
                case "\n": escaped += "\\n"
                case "\r": escaped += "\\r"
                default: escaped.append(character)
                }
            }
            return escaped
        }
    }

    // MARK: Files

    private func upload(plan: SeedPlan, caseID: Int64, store: any ObjectStore) async throws -> Int {
        let concurrency = max(1, uploadConcurrency)
        var written = 0
        do {
            try await withThrowingTaskGroup(of: Int.self) { group in
                var next = 0
                func add() {
                    let index = next
                    next += 1
                    group.addTask {
                        var count = 0
                        for file in plan.files(index) {
                            try await store.put(
                                try CaseKeys.documentFile(caseID: caseID, documentID: file.documentID, fileName: file.name), file.data,
                                contentType: file.mime)
                            count += 1
                        }
                        return count
                    }
                }
                while next < min(concurrency, plan.documents) { add() }
                while let done = try await group.next() {
                    written += done
                    if next < plan.documents { add() }
                }
            }
        } catch let error as CaseDataError {
            throw error
        } catch {
            throw CaseDataError(.storage, "case \(caseID): writing document files failed: \(error)")
        }
        return written
    }
}

/// Rows for one table, in column order.
struct SeedTable: Sendable {
    var name: String
    var columns: [String]
    var rows: [[SQLValue]] = []
}

/// One document's file for object storage.
struct SeedFile: Sendable {
    var documentID: Int64
    var name: String
    var mime: String
    var data: Data
}

/// The deterministic content of a synthetic case: every value is a function of the seed and
/// the document's index, so rounds and uploads can be generated independently.
struct SeedPlan: Sendable {
    let documents: Int
    let seed: UInt64
    let bases: [String: Int64]
    let custodians: Int
    let batches: Int
    /// Bit position of each confidentiality code (a seed-dependent permutation of 0…9).
    let codeBits: [Int]
    /// Least size of each PDF rendition.
    let pdfBytes: Int

    init(documents: Int, seed: UInt64, bases: [String: Int64], pdfBytes: Int = 0) {
        self.documents = documents
        self.pdfBytes = pdfBytes
        self.seed = seed
        self.bases = bases
        custodians = min(500, max(3, documents / 50))
        batches = max(1, documents / 1_000)
        var generator = SeededGenerator(seed: seed ^ 0xC0DE)
        codeBits = Array(Array(0..<10).shuffled(using: &generator).prefix(CaseSeeder.codeNames.count))
    }

    func base(_ table: String) -> Int64 { bases[table] ?? 0 }
    func documentID(_ index: Int) -> Int64 { base("documents") + Int64(index) + 1 }

    /// `2024-01-01T00:00:00Z` plus `minutes`, as ISO 8601 text (civil-from-days arithmetic: no
    /// formatter per value).
    static func timestamp(minutes: Int) -> SQLValue {
        let total = 1_704_067_200 / 60 + max(0, minutes)
        let days = total / 1440
        let minuteOfDay = total % 1440
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = z / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : String(value) }
        return .text("\(year)-\(two(month))-\(two(day))T\(two(minuteOfDay / 60)):\(two(minuteOfDay % 60)):00Z")
    }

    private func generator(_ index: Int, _ salt: UInt64) -> SeededGenerator {
        SeededGenerator(seed: seed &* 0x100_0000_01B3 ^ UInt64(index) &* 0x9E37_79B9 ^ salt)
    }

    // MARK: Reference rows

    func referenceTables() -> [SeedTable] {
        var batchesTable = SeedTable(name: "batches", columns: ["id", "name", "source", "created_at"])
        for index in 0..<batches {
            batchesTable.rows.append([.integer(base("batches") + Int64(index) + 1), .text("Import \(index + 1)"), .text("synthetic seed \(seed)"),
                Self.timestamp(minutes: index)])
        }
        var custodianTable = SeedTable(name: "custodians", columns: ["id", "name", "email", "created_at"])
        let first = ["Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"]
        let last = ["Adams", "Baker", "Clark", "Davis", "Evans", "Foster", "Garcia", "Hughes"]
        for index in 0..<custodians {
            let name = "\(first[index % first.count]) \(last[(index / first.count) % last.count]) \(index + 1)"
            custodianTable.rows.append([.integer(base("custodians") + Int64(index) + 1), .text(name),
                .text("custodian\(index + 1)@example.com"), Self.timestamp(minutes: index)])
        }
        var codes = SeedTable(name: "confidentiality_codes", columns: ["id", "name", "bit_position", "stamp_text", "created_at"])
        for (index, name) in CaseSeeder.codeNames.enumerated() {
            codes.rows.append([.integer(base("confidentiality_codes") + Int64(index) + 1), .text(name), SQLValue(codeBits[index]),
                .text(name.uppercased()), Self.timestamp(minutes: index)])
        }
        var categories = SeedTable(name: "label_categories", columns: ["id", "name", "color", "created_at"])
        for (index, name) in CaseSeeder.categoryNames.enumerated() {
            categories.rows.append([.integer(base("label_categories") + Int64(index) + 1), .text(name), .text(Self.colors[index % Self.colors.count]),
                Self.timestamp(minutes: index)])
        }
        var labels = SeedTable(name: "labels", columns: ["id", "name", "color", "created_at"])
        for (index, name) in CaseSeeder.labelNames.enumerated() {
            labels.rows.append([.integer(base("labels") + Int64(index) + 1), .text(name), .text(Self.colors[(index + 2) % Self.colors.count]),
                Self.timestamp(minutes: index)])
        }
        var fields = SeedTable(name: "custom_fields", columns: ["id", "name", "field_type", "created_at"])
        for (index, field) in CaseSeeder.fieldDefinitions.enumerated() {
            fields.rows.append([.integer(base("custom_fields") + Int64(index) + 1), .text(field.0), .text(field.1), Self.timestamp(minutes: index)])
        }
        var folders = SeedTable(name: "folder_tags", columns: ["id", "name", "description", "created_at"])
        for (index, name) in CaseSeeder.folderNames.enumerated() {
            folders.rows.append([.integer(base("folder_tags") + Int64(index) + 1), .text(name), .text("\(name) folder"), Self.timestamp(minutes: index)])
        }
        var issues = SeedTable(name: "issues", columns: ["id", "name", "description", "created_at"])
        for (index, name) in CaseSeeder.issueNames.enumerated() {
            issues.rows.append([.integer(base("issues") + Int64(index) + 1), .text(name), .text("Issue: \(name)"), Self.timestamp(minutes: index)])
        }
        return [batchesTable, custodianTable, codes, categories, labels, fields, folders, issues]
    }

    static let colors = ["#d32f2f", "#1976d2", "#388e3c", "#fbc02d", "#7b1fa2", "#455a64"]

    // MARK: Document rows (20 per document)

    func documentTables(_ range: Range<Int>) -> [SeedTable] {
        var documentsTable = SeedTable(name: "documents", columns: [
            "id", "batch_id", "custodian_id", "control_number", "bates_begin", "bates_end", "title", "file_name", "mime_type", "page_count",
            "file_size", "sha256", "confidentiality_status", "relevancy", "document_date", "created_at", "updated_at",
        ])
        var variants = SeedTable(name: "document_variants", columns: ["id", "document_id", "variant_type", "file_name", "mime_type", "file_size", "sha256", "created_at"])
        var exhibits = SeedTable(name: "exhibits", columns: [
            "id", "document_id", "exhibit_number", "bates_begin", "bates_end", "page_count", "confidentiality_status", "document_properties", "created_at",
        ])
        var custodianExhibits = SeedTable(name: "custodian_exhibits", columns: ["id", "custodian_id", "exhibit_id", "role", "created_at"])
        var labelLinks = SeedTable(name: "label_category_labels", columns: ["id", "label_category_id", "label_id", "document_id", "created_at"])
        var values = SeedTable(name: "custom_field_values", columns: [
            "id", "custom_field_id", "document_id", "exhibit_id", "number_value", "text_value", "date_value", "created_at",
        ])
        var foldered = SeedTable(name: "folder_taggings", columns: ["id", "folder_tag_id", "document_id", "position", "created_at"])
        var issueLinks = SeedTable(name: "issue_taggings", columns: ["id", "issue_id", "document_id", "note", "created_at"])
        var confidentialityLogs = SeedTable(name: "confidentiality_logs", columns: ["id", "document_id", "confidentiality_code_id", "action", "user_name", "created_at"])
        var relevancyLogs = SeedTable(name: "relevancy_logs", columns: ["id", "document_id", "relevancy", "previous_relevancy", "user_name", "created_at"])

        for index in range {
            var random = generator(index, 0xD0C)
            let id = documentID(index)
            let i64 = Int64(index)
            let minute = 60 * 24 * 30 + index
            let pages = Int.random(in: 1...5, using: &random)
            let batesStart = 1 + i64 * 5
            let bates = ("SYN" + Self.padded(batesStart, 7), "SYN" + Self.padded(batesStart + Int64(pages) - 1, 7))
            let custodian = base("custodians") + Int64(Int.random(in: 0..<custodians, using: &random)) + 1
            let batch = base("batches") + Int64(index % batches) + 1
            var status: Int64 = 0
            var codesUsed: [Int] = []
            for code in 0..<CaseSeeder.codeNames.count where Int.random(in: 0..<4, using: &random) == 0 {
                status |= 1 << Int64(codeBits[code])
                codesUsed.append(code)
            }
            let title = "Synthetic document \(id) (\(CaseSeeder.issueNames[index % CaseSeeder.issueNames.count]))"
            let native = SyntheticFiles.nativeKinds[index % SyntheticFiles.nativeKinds.count]
            let size = Int64(Int.random(in: 2_000...900_000, using: &random))
            let digest = Self.sha256("seed-\(seed)-doc-\(id)")
            let relevancy = CaseSeeder.relevancies[Int.random(in: 0..<CaseSeeder.relevancies.count, using: &random)]
            documentsTable.rows.append([
                .integer(id), .integer(batch), .integer(custodian), .text("CTRL-" + Self.padded(id, 8)), .text(bates.0), .text(bates.1),
                .text(title), .text("\(id).\(native.ext)"), .text(native.mime), SQLValue(pages), .integer(size), .text(digest), .integer(status),
                .text(relevancy), Self.timestamp(minutes: index * 7), Self.timestamp(minutes: minute), Self.timestamp(minutes: minute + 5),
            ])
            let variantBase = base("document_variants") + i64 * 3
            variants.rows.append([.integer(variantBase + 1), .integer(id), "pdf", .text("\(id).pdf"), "application/pdf", .integer(size / 3),
                .text(Self.sha256("pdf-\(digest)")), Self.timestamp(minutes: minute)])
            variants.rows.append([.integer(variantBase + 2), .integer(id), "native", .text("\(id).\(native.ext)"), .text(native.mime), .integer(size),
                .text(digest), Self.timestamp(minutes: minute)])
            variants.rows.append([.integer(variantBase + 3), .integer(id), "text", .text("\(id).txt"), "text/plain", .integer(size / 10),
                .text(Self.sha256("txt-\(digest)")), Self.timestamp(minutes: minute)])
            let exhibitID = base("exhibits") + i64 + 1
            let properties = #"{"author": "custodian \#(custodian)", "pages": \#(pages), "source_file": "\#(id).\#(native.ext)", "seed": \#(seed)}"#
            exhibits.rows.append([.integer(exhibitID), .integer(id), .text("EX-" + Self.padded(id, 6)), .text(bates.0), .text(bates.1),
                SQLValue(pages), .integer(status), .text(properties), Self.timestamp(minutes: minute + 1)])
            custodianExhibits.rows.append([.integer(base("custodian_exhibits") + i64 + 1), .integer(custodian), .integer(exhibitID),
                .text(index % 3 == 0 ? "author" : "recipient"), Self.timestamp(minutes: minute + 1)])
            let labelCount = CaseSeeder.labelNames.count
            let firstLabel = Int.random(in: 0..<labelCount, using: &random)
            for offset in 0..<3 {
                let label = (firstLabel + offset * 5) % labelCount
                labelLinks.rows.append([.integer(base("label_category_labels") + i64 * 3 + Int64(offset) + 1),
                    .integer(base("label_categories") + Int64(label % CaseSeeder.categoryNames.count) + 1), .integer(base("labels") + Int64(label) + 1),
                    .integer(id), Self.timestamp(minutes: minute + 2)])
            }
            let valueBase = base("custom_field_values") + i64 * 3
            values.rows.append([.integer(valueBase + 1), .integer(base("custom_fields") + 1), .integer(id), .null,
                .double(Double(Int.random(in: 0...1_000_000, using: &random)) / 100), .null, .null, Self.timestamp(minutes: minute + 3)])
            values.rows.append([.integer(valueBase + 2), .integer(base("custom_fields") + 2), .integer(id), .null, .null,
                .text("Reviewer \(index % 7 + 1)"), .null, Self.timestamp(minutes: minute + 3)])
            values.rows.append([.integer(valueBase + 3), .integer(base("custom_fields") + 3), .null, .integer(exhibitID), .null, .null,
                Self.timestamp(minutes: index * 3), Self.timestamp(minutes: minute + 3)])
            let firstFolder = Int.random(in: 0..<CaseSeeder.folderNames.count, using: &random)
            for offset in 0..<2 {
                let folder = (firstFolder + offset * 3) % CaseSeeder.folderNames.count
                foldered.rows.append([.integer(base("folder_taggings") + i64 * 2 + Int64(offset) + 1), .integer(base("folder_tags") + Int64(folder) + 1),
                    .integer(id), SQLValue(index), Self.timestamp(minutes: minute + 4)])
            }
            let firstIssue = Int.random(in: 0..<CaseSeeder.issueNames.count, using: &random)
            for offset in 0..<2 {
                let issue = (firstIssue + offset * 2) % CaseSeeder.issueNames.count
                issueLinks.rows.append([.integer(base("issue_taggings") + i64 * 2 + Int64(offset) + 1), .integer(base("issues") + Int64(issue) + 1),
                    .integer(id), offset == 0 ? .text("Key passage on page \(pages)") : .null, Self.timestamp(minutes: minute + 4)])
            }
            for offset in 0..<2 {
                let code = codesUsed.isEmpty ? (index + offset) % CaseSeeder.codeNames.count : codesUsed[offset % codesUsed.count]
                confidentialityLogs.rows.append([.integer(base("confidentiality_logs") + i64 * 2 + Int64(offset) + 1), .integer(id),
                    .integer(base("confidentiality_codes") + Int64(code) + 1), .text(offset == 0 || !codesUsed.isEmpty ? "added" : "removed"),
                    .text("reviewer\(index % 7 + 1)"), Self.timestamp(minutes: minute + 5 + offset)])
            }
            relevancyLogs.rows.append([.integer(base("relevancy_logs") + i64 * 2 + 1), .integer(id), "needs_review", .null, "system",
                Self.timestamp(minutes: minute + 6)])
            relevancyLogs.rows.append([.integer(base("relevancy_logs") + i64 * 2 + 2), .integer(id), .text(relevancy), "needs_review",
                .text("reviewer\(index % 7 + 1)"), Self.timestamp(minutes: minute + 7)])
        }
        return [documentsTable, variants, exhibits, custodianExhibits, labelLinks, values, foldered, issueLinks, confidentialityLogs, relevancyLogs]
    }

    // MARK: Files

    func files(_ index: Int) -> [SeedFile] {
        var random = generator(index, 0xD0C)
        let id = documentID(index)
        let pages = Int.random(in: 1...5, using: &random)
        let title = "Synthetic document \(id) (\(CaseSeeder.issueNames[index % CaseSeeder.issueNames.count]))"
        let native = SyntheticFiles.nativeKinds[index % SyntheticFiles.nativeKinds.count]
        let body = "This is synthetic document \(id) of seed \(seed). It discusses \(CaseSeeder.issueNames[index % CaseSeeder.issueNames.count].lowercased())."
        return [
            SeedFile(documentID: id, name: "\(id).pdf", mime: "application/pdf", data: SyntheticFiles.pdf(title: title, pages: pages, minimumBytes: pdfBytes)),
            SeedFile(documentID: id, name: "\(id).\(native.ext)", mime: native.mime,
                data: SyntheticFiles.native(kind: index, documentID: id, title: title, body: body)),
            SeedFile(documentID: id, name: "\(id).txt", mime: "text/plain", data: Data((title + "\n\n" + body + "\n").utf8)),
        ]
    }

    static func sha256(_ text: String) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in SHA256.hash(data: Data(text.utf8)) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// `value` in decimal, zero-padded to `width` digits.
    static func padded(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}
