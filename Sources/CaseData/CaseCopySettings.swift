import Foundation

/// Which documents an exchange copies.
public enum CaseDocumentSelection: Sendable, Hashable {
    /// These document ids (ids the source does not have are listed in
    /// ``CaseCopyReport/notFoundDocumentIDs``).
    case documentIDs([Int64])
    /// Every document carrying this label (a row of the table linking documents and labels).
    case labelID(Int64)
    /// Every document in this folder (a row of the table linking documents and folder tags).
    case folderID(Int64)
}

/// The copy engine's settings; every size and duration has a default.
///
/// | environment variable | meaning | default |
/// |---|---|---|
/// | `EXCHANGER_CASE_COPY_CHUNK_BYTES` | bytes per chunk streamed from `COPY … TO STDOUT` | 262144 |
/// | `EXCHANGER_CASE_COPY_PIPE_CHUNKS` | chunks buffered between the source and the destination COPY | 8 |
/// | `EXCHANGER_CASE_COPY_SQLITE_BATCH_ROWS` | rows read and staged per statement (SQLite) | 500 |
/// | `EXCHANGER_CASE_COPY_STATEMENT_TIMEOUT_SECONDS` | PostgreSQL `statement_timeout` of the copy's sessions (0: none) | 3600 |
/// | `EXCHANGER_CASE_COPY_IDLE_TIMEOUT_SECONDS` | PostgreSQL `idle_in_transaction_session_timeout` (the source snapshot stays open while the destination writes; 0: none) | 3600 |
/// | `EXCHANGER_CASE_COPY_SOURCE_EXHIBIT_FIELD` | name of the text custom field holding the source exhibit id (decimal digits) | `Source Exhibit ID` |
public struct CaseCopySettings: Sendable, Hashable {
    /// The table the walk starts from.
    public var rootTable = "documents"
    /// The root table's column naming a document in reports (excluded documents).
    public var rootNameColumn = "control_number"
    /// The label table (selection by label: documents linked to it through a table referencing both).
    public var labelTable = "labels"
    /// The folder table (selection by folder, likewise).
    public var folderTable = "folder_tags"
    /// Tables merged into the destination's existing rows by a column (de-duplication by name)
    /// instead of getting new rows.
    public var mergeByColumn: [String: String] = [
        "label_categories": "name", "folder_tags": "name", "confidentiality_codes": "name", "custom_fields": "name",
    ]
    /// Columns a row merged by name must have equal in the source and the destination (a custom
    /// field's type): when they differ the copy fails with ``CaseDataError/Code/conflict`` before
    /// writing anything, instead of writing values into a field of another type.
    public var mergeMustAgree: [String: [String]] = ["custom_fields": ["field_type"]]
    /// Columns written as NULL on the copied rows.
    public var clearedColumns: [String: [String]] = ["exhibits": ["document_properties"]]
    /// The confidentiality codes table, its name and bit columns, and the bitmask column (in any
    /// copied table) remapped to the destination's codes.
    public var confidentialityTable = "confidentiality_codes"
    /// The code's bit position column.
    public var confidentialityBitColumn = "bit_position"
    /// The bitmask column remapped in every copied table that has it.
    public var confidentialityBitmaskColumn = "confidentiality_status"
    /// The exhibits table and the custom-field tables of the source-exhibit-id rule.
    public var exhibitTable = "exhibits"
    /// The custom field definitions.
    public var customFieldTable = "custom_fields"
    /// The custom field values (`custom_field_id`, `exhibit_id`, `text_value`).
    public var customFieldValueTable = "custom_field_values"
    /// The text custom field the source exhibit id is written to, as decimal digits (exact for
    /// every 64-bit id). A field of that name and another type is a ``CaseDataError/Code/conflict``.
    public var sourceExhibitField = "Source Exhibit ID"
    /// The table listing each document's files (for the report's ``CaseDocumentMapping/files``).
    public var variantTable = "document_variants"

    /// Bytes per chunk of `COPY … TO STDOUT`.
    public var copyChunkBytes = 256 * 1024
    /// Chunks buffered between the source and the destination COPY.
    public var pipeChunks = 8
    /// Rows read and staged per statement on SQLite.
    public var sqliteBatchRows = 500
    /// `statement_timeout` of the copy's PostgreSQL sessions; nil for none.
    public var statementTimeout: Duration? = .seconds(3600)
    /// `idle_in_transaction_session_timeout` of the copy's PostgreSQL sessions; nil for none.
    public var idleInTransactionTimeout: Duration? = .seconds(3600)

    /// The defaults.
    public init() {}

    /// The defaults with the environment's overrides (see the table above).
    /// - Throws: ``CaseDataError/Code/invalidArgument`` naming a malformed variable.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.init()
        func integer(_ name: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Int(text), range.contains(value) else {
                throw CaseDataError(.invalidArgument, "\(name)='\(text)' must be a whole number in \(range.lowerBound)…\(range.upperBound)")
            }
            return value
        }
        if let value = try integer("EXCHANGER_CASE_COPY_CHUNK_BYTES", 1024...(64 << 20)) { copyChunkBytes = value }
        if let value = try integer("EXCHANGER_CASE_COPY_PIPE_CHUNKS", 1...1024) { pipeChunks = value }
        if let value = try integer("EXCHANGER_CASE_COPY_SQLITE_BATCH_ROWS", 1...10_000) { sqliteBatchRows = value }
        if let value = try integer("EXCHANGER_CASE_COPY_STATEMENT_TIMEOUT_SECONDS", 0...604_800) {
            statementTimeout = value == 0 ? nil : .seconds(value)
        }
        if let value = try integer("EXCHANGER_CASE_COPY_IDLE_TIMEOUT_SECONDS", 0...604_800) {
            idleInTransactionTimeout = value == 0 ? nil : .seconds(value)
        }
        if let value = environment["EXCHANGER_CASE_COPY_SOURCE_EXHIBIT_FIELD"], !value.isEmpty { sourceExhibitField = value }
    }
}

/// What one table contributed to a copy.
public struct CaseCopyTableReport: Sendable, Hashable, Codable {
    /// The table.
    public var table: String
    /// Source rows the selection reached.
    public var selectedRows: Int
    /// Rows inserted into the destination by this run (0 for a table finished by an earlier run,
    /// and for rows merged into existing destination rows).
    public var insertedRows: Int
    /// True when an earlier run of the job had finished the table (its checkpoint was reused).
    public var resumed: Bool
}

/// A copied document: its id in the source and in the destination case, its exhibit and files.
public struct CaseDocumentMapping: Sendable, Hashable, Codable {
    /// The document's id in the source case.
    public var sourceDocumentID: Int64
    /// The new document's id in the destination case.
    public var destinationDocumentID: Int64
    /// Its (first) exhibit in the destination case, when it has one.
    public var destinationExhibitID: Int64?
    /// Its files as `document_variants` lists them (the names are the same in both cases).
    public var files: [CaseDocumentFile]
    /// Its (first) exhibit in the source case, when it has one.
    public var sourceExhibitID: Int64? = nil
    /// Its batch in the source case, when it has one.
    public var sourceBatchID: Int64? = nil
}

/// One file of a document: a `document_variants` row.
public struct CaseDocumentFile: Sendable, Hashable, Codable {
    /// The object's file name under `case_{caseId}/documents/{documentId}/`.
    public var name: String
    /// `pdf` (the rendition), `native` or `text`.
    public var variant: String
}

/// A selected document the copy left out, with the reason.
public struct CaseExcludedDocument: Sendable, Hashable, Codable {
    /// The document's id in the source case.
    public var sourceDocumentID: Int64
    /// Its name (``CaseCopySettings/rootNameColumn``), when it has one.
    public var name: String?
    /// Why it was left out: each reference to a row the source case does not have.
    public var reason: String
}

/// A selected document the copy left out because an earlier exchange from the same source case
/// had delivered it into the destination case (``CaseCopyOptions/skipExchanged``).
public struct CaseSkippedDocument: Sendable, Hashable, Codable {
    /// The document's id in the source case.
    public var sourceDocumentID: Int64
    /// The destination document the earlier exchange made of it.
    public var destinationDocumentID: Int64
    /// The earlier exchange's job id.
    public var earlierJobID: String

    /// A value with the given fields.
    public init(sourceDocumentID: Int64, destinationDocumentID: Int64, earlierJobID: String) {
        self.sourceDocumentID = sourceDocumentID
        self.destinationDocumentID = destinationDocumentID
        self.earlierJobID = earlierJobID
    }
}

/// How one copy treats documents an earlier exchange already delivered.
public struct CaseCopyOptions: Sendable, Hashable {
    /// Leave out every selected document that an earlier, finished exchange from the same source
    /// case delivered into the destination case and whose destination document still exists (the
    /// `exchange_documents` ledger says `delivered`); listed in
    /// ``CaseCopyReport/skippedDocuments``. False copies them again, as new documents.
    public var skipExchanged: Bool

    /// The job whose id map this copy reuses (a retry of that job's left-behind documents): a
    /// selected row that job copied keeps the destination id it got then, so rows already in the
    /// destination are not copied twice; only rows that job did not copy get new ids. The job must
    /// have copied from the same source case into the same destination case.
    public var reuseIDsOf: String?

    /// A value with the given fields.
    public init(skipExchanged: Bool = false, reuseIDsOf: String? = nil) {
        self.skipExchanged = skipExchanged
        self.reuseIDsOf = reuseIDsOf
    }
}

/// How the documents of a job ended, by destination document id, as the orchestrator counted them
/// when the exchange ended (``CaseCopyEngine/recordOutcomes(destinationCase:jobID:outcomes:)``).
public struct CaseDocumentOutcomes: Sendable, Hashable {
    /// Documents that went through every stage (only of an exchange that finished).
    public var delivered: Set<Int64>
    /// Documents whose files were not found in the source store.
    public var notFound: Set<Int64>

    /// A value with the given fields; every other document of the job counts as failed.
    public init(delivered: Set<Int64>, notFound: Set<Int64>) {
        self.delivered = delivered
        self.notFound = notFound
    }
}

/// The outcome of ``CaseCopyEngine/copy(sourceCase:destinationCase:selection:jobID:options:)``.
public struct CaseCopyReport: Sendable, Hashable, Codable {
    /// The job the copy ran for.
    public var jobID: String
    /// The case copied from.
    public var sourceCaseID: Int64
    /// The case copied into.
    public var destinationCaseID: Int64
    /// Every table of the plan, in copy order.
    public var tables: [CaseCopyTableReport]
    /// Rows of the job in the destination's id map.
    public var idMapSize: Int
    /// The selected documents, old → new id, by source id.
    public var documents: [CaseDocumentMapping]
    /// Selected documents not copied because a row of theirs references a row the source case
    /// does not have (found in the source snapshot before anything is written), by source id.
    public var excludedDocuments: [CaseExcludedDocument] = []
    /// Requested document ids (``CaseDocumentSelection/documentIDs(_:)``) the source case does
    /// not have, ascending.
    public var notFoundDocumentIDs: [Int64] = []
    /// Selected documents left out because an earlier exchange delivered them
    /// (``CaseCopyOptions/skipExchanged``), by source id.
    public var skippedDocuments: [CaseSkippedDocument] = []
    /// What was copied but not as the source has it, one sentence each: confidentiality bits set on
    /// selected rows with no code in the source case (no name to map them by, so they are not
    /// carried over).
    public var warnings: [String] = []
    /// Seconds the call took.
    public var seconds: Double

    /// Rows inserted by this run, all tables together.
    public var insertedRows: Int { tables.reduce(0) { $0 + $1.insertedRows } }
}

extension CaseCopyReport {
    /// Decodes a report; `excludedDocuments`, `notFoundDocumentIDs`, `skippedDocuments` and `warnings` may be absent
    /// (reports written before they existed) and are then empty.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        jobID = try container.decode(String.self, forKey: .jobID)
        sourceCaseID = try container.decode(Int64.self, forKey: .sourceCaseID)
        destinationCaseID = try container.decode(Int64.self, forKey: .destinationCaseID)
        tables = try container.decode([CaseCopyTableReport].self, forKey: .tables)
        idMapSize = try container.decode(Int.self, forKey: .idMapSize)
        documents = try container.decode([CaseDocumentMapping].self, forKey: .documents)
        excludedDocuments = try container.decodeIfPresent([CaseExcludedDocument].self, forKey: .excludedDocuments) ?? []
        notFoundDocumentIDs = try container.decodeIfPresent([Int64].self, forKey: .notFoundDocumentIDs) ?? []
        skippedDocuments = try container.decodeIfPresent([CaseSkippedDocument].self, forKey: .skippedDocuments) ?? []
        warnings = try container.decodeIfPresent([String].self, forKey: .warnings) ?? []
        seconds = try container.decode(Double.self, forKey: .seconds)
    }
}

/// What the orchestrator calls to copy case data (a protocol so it can be replaced in tests).
public protocol CaseCopyEngine: Sendable {
    /// Copies the selected documents and everything reachable from them; resumable and
    /// idempotent per `jobID`.
    func copy(
        sourceCase: Int64, destinationCase: Int64, selection: CaseDocumentSelection, jobID: String, options: CaseCopyOptions
    ) async throws -> CaseCopyReport

    /// Writes how the job's copied documents ended into the destination case's ledger
    /// (`exchange_documents`); idempotent.
    /// - Returns: the ledger rows changed.
    func recordOutcomes(destinationCase: Int64, jobID: String, outcomes: CaseDocumentOutcomes) async throws -> Int

    /// The source documents the job left behind, ascending: its ledger rows that ended `failed` or
    /// `not_found`, less those another job has delivered into the case since (their destination
    /// document still existing). What a retry of the job copies (``CaseCopyOptions/reuseIDsOf``).
    func leftBehind(destinationCase: Int64, jobID: String) async throws -> [Int64]
}

extension CaseCopyEngine {
    /// Copies with the default options (documents an earlier exchange delivered are copied again).
    public func copy(sourceCase: Int64, destinationCase: Int64, selection: CaseDocumentSelection, jobID: String) async throws -> CaseCopyReport {
        try await copy(sourceCase: sourceCase, destinationCase: destinationCase, selection: selection, jobID: jobID, options: CaseCopyOptions())
    }
}
