import Foundation
import Logging
import ObjectStorage

/// The document engine of the embedded default and the tests: documents kept in object storage.
///
/// Layout, under ``Settings/prefix`` (default `document-engine`) of the engine's store:
/// ```
/// document-engine/{engineDocumentId}/document.pdf          the PDF
/// document-engine/{engineDocumentId}/annotations.ndjson    Instant JSON annotations, one per line
/// document-engine/{engineDocumentId}/attachments/{id}      attachment binaries (content types in document.json)
/// document-engine/{engineDocumentId}/document.json         EngineDocumentInfo, written last
/// ```
/// `document.json` is the commit point: it is written after everything else and removed before
/// anything of an existing document is replaced, so a crash mid-ingest leaves a document that
/// ``exists(_:)`` reports absent, and the retry completes it. Ingest first hashes the PDF (one
/// streaming read); when the record already names the same PDF and annotations nothing is written.
/// A PDF in the same store is copied server-side; from another store it passes through a
/// temporary file.
public struct LocalDocumentEngine: DocumentEngine {
    /// How the engine keeps its documents.
    public struct Settings: Sendable, Hashable {
        /// The key prefix of the engine's documents; `document-engine` by default.
        public var prefix: String = DocumentEngineKeys.defaultPrefix
        /// Where a PDF from another store is staged on its way in; the system temporary directory by default.
        public var temporaryDirectory: String = FileManager.default.temporaryDirectory.path
        /// The `qpdf` executable ``LocalDocumentEngine/buildFlattened(pdf:annotations:)`` runs: a name
        /// looked up on `PATH` or a path (`EXCHANGER_QPDF_PATH`, default `qpdf`).
        public var qpdfPath: String = "qpdf"
        /// Poppler's `pdfinfo` (page geometry for brand_in): `EXCHANGER_PDFINFO_PATH`, default `pdfinfo`.
        public var pdfinfoPath: String = "pdfinfo"
        /// Poppler's `pdftotext` (word boxes for redaction): `EXCHANGER_PDFTOTEXT_PATH`, default `pdftotext`.
        public var pdftotextPath: String = "pdftotext"
        /// Poppler's `pdftoppm` (rendering redacted pages): `EXCHANGER_PDFTOPPM_PATH`, default `pdftoppm`.
        public var pdftoppmPath: String = "pdftoppm"
        /// The resolution redacted pages are rendered at, dots per inch (`EXCHANGER_REDACTION_DPI`, default 150).
        public var redactionResolution: Int = 150
        /// The JPEG quality of redacted pages, 1–100 (`EXCHANGER_REDACTION_JPEG_QUALITY`, default 90).
        public var redactionJPEGQuality: Int = 90
        /// How long one run of qpdf or a poppler program may take before its process group is
        /// killed and the build retried (`EXCHANGER_PDF_TOOL_TIMEOUT_SECONDS`, default 300).
        public var toolTimeout: Duration = .seconds(300)

        public init(
            prefix: String = DocumentEngineKeys.defaultPrefix, temporaryDirectory: String = FileManager.default.temporaryDirectory.path,
            qpdfPath: String = "qpdf"
        ) {
            self.prefix = prefix
            self.temporaryDirectory = temporaryDirectory
            self.qpdfPath = qpdfPath
        }
    }

    /// Where the engine keeps its documents.
    public let store: any ObjectStore
    /// Where ``PDFSource/object(_:)`` keys are read from (the case storage).
    public let sourceStore: any ObjectStore
    public let settings: Settings
    private let ownsStore: Bool
    private let logger: Logger

    /// An engine keeping its documents in `store`, reading PDFs from `sourceStore` (the same store
    /// when nil). With `ownsStore`, ``shutdown()`` shuts `store` down; the source store is never shut down here.
    /// Throws ``DocumentEngineError/Code/invalidURL`` for a prefix that is not a valid key.
    public init(
        store: any ObjectStore, sourceStore: (any ObjectStore)? = nil, settings: Settings = Settings(), ownsStore: Bool = false,
        logger: Logger = Logger(label: "exchanger.document-engine")
    ) throws(DocumentEngineError) {
        do {
            _ = try ObjectKey(settings.prefix)
        } catch {
            throw DocumentEngineError(.invalidURL, "document-engine prefix '\(settings.prefix)' is not a valid key: \(error.message)")
        }
        self.store = store
        self.sourceStore = sourceStore ?? store
        self.settings = settings
        self.ownsStore = ownsStore
        self.logger = logger
    }

    // MARK: DocumentEngine

    @discardableResult
    public func ingest(_ id: EngineDocumentID, pdf: PDFSource, annotations: InstantJSON) async throws -> IngestResult {
        let keys = try keys(id)
        let annotationsDocument = try annotations.documentData()
        let annotationsDigest = SHA256Hasher.hex(annotationsDocument)
        let (size, digest) = try await hash(pdf)

        let existing: EngineDocumentInfo?
        do {
            existing = try await readInfo(id, keys: keys)
        } catch let error as DocumentEngineError where error.code == .permanent {
            // A damaged record must not block the document forever: the ingest rewrites it.
            logger.warning("damaged document record; replacing it", metadata: ["engineDocumentId": "\(id)", "error": "\(error)"])
            try await storage("withdraw \(id)") { try await store.delete(keys.metadata) }
            existing = nil
        }
        if let existing, existing.sha256 == digest, existing.bytes == size, existing.annotationsSHA256 == annotationsDigest,
           (try? await store.head(keys.pdf).size) == size  // on any doubt, write again: that is safe
        {
            logger.debug("document unchanged", metadata: ["engineDocumentId": "\(id)"])
            return IngestResult(outcome: .unchanged, document: existing)
        }
        if existing != nil {
            // Replacing: the document is absent from here until the new record is written.
            try await storage("withdraw \(id)") { try await store.delete(keys.metadata) }
        }

        let copied = try await transfer(pdf, to: keys.pdf, id: id)
        if let copied, copied != size {
            throw DocumentEngineError(.transient, "the PDF of \(id) changed while it was ingested (\(size) bytes hashed, \(copied) copied)")
        }
        try await storage("write annotations of \(id)") {
            try await store.put(keys.annotations, annotations.ndjsonData(), contentType: "application/x-ndjson")
        }
        var attachments: [EngineDocumentInfo.Attachment] = []
        for attachment in annotations.attachments {
            let key = try key { () throws(ObjectStorageError) in
                try DocumentEngineKeys.attachment(id, attachmentID: attachment.id, prefix: settings.prefix)
            }
            try await storage("write attachment \(attachment.id) of \(id)") {
                try await store.put(key, attachment.data, contentType: attachment.contentType)
            }
            attachments.append(EngineDocumentInfo.Attachment(
                id: attachment.id, contentType: attachment.contentType, bytes: Int64(attachment.data.count),
                sha256: SHA256Hasher.hex(attachment.data)))
        }
        try await removeAttachments(of: id, keeping: Set(attachments.map(\.id)))

        let info = EngineDocumentInfo(
            id: id, bytes: size, sha256: digest, annotationCount: annotations.annotations.count, annotationsSHA256: annotationsDigest,
            attachments: attachments, ingestedAt: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)))  // whole seconds, as the record stores them
        let record: Data
        do {
            record = try Self.encoder.encode(info)
        } catch {
            throw DocumentEngineError(.permanent, "cannot encode the record of \(id): \(error)")
        }
        try await storage("write record of \(id)") { try await store.put(keys.metadata, record, contentType: "application/json") }
        let outcome: IngestResult.Outcome = existing == nil ? .created : .replaced
        logger.debug("document ingested", metadata: [
            "engineDocumentId": "\(id)", "bytes": "\(size)", "annotations": "\(info.annotationCount)", "outcome": "\(outcome.rawValue)",
        ])
        return IngestResult(outcome: outcome, document: info)
    }

    public func exists(_ id: EngineDocumentID) async throws -> Bool {
        let keys = try keys(id)
        return try await storage("check \(id)") { try await store.exists(keys.metadata) }
    }

    public func info(_ id: EngineDocumentID) async throws -> EngineDocumentInfo {
        guard let info = try await readInfo(id, keys: try keys(id)) else {
            throw DocumentEngineError(.notFound, "no document \(id)")
        }
        return info
    }

    public func document(_ id: EngineDocumentID) async throws -> Data {
        let keys = try keys(id)
        _ = try await info(id)
        return try await storage("read the PDF of \(id)") { try await store.get(keys.pdf) }
    }

    public func annotations(_ id: EngineDocumentID) async throws -> InstantJSON {
        let keys = try keys(id)
        let info = try await info(id)
        let ndjson = try await storage("read the annotations of \(id)") { try await store.get(keys.annotations) }
        let annotations = try InstantJSON(ndjson: ndjson).annotations
        var attachments: [InstantJSONAttachment] = []
        for entry in info.attachments {
            let key = try key { () throws(ObjectStorageError) in
                try DocumentEngineKeys.attachment(id, attachmentID: entry.id, prefix: settings.prefix)
            }
            let data = try await storage("read attachment \(entry.id) of \(id)") { try await store.get(key) }
            attachments.append(try InstantJSONAttachment(id: entry.id, contentType: entry.contentType, data: data))
        }
        return try InstantJSON(annotations: annotations, attachments: attachments)
    }

    public func delete(_ id: EngineDocumentID) async throws {
        let keys = try keys(id)
        // The record first: from then on the document is absent, whatever else a crash leaves.
        try await storage("delete \(id)") { try await store.delete(keys.metadata) }
        let prefix = DocumentEngineKeys.documentPrefix(id, prefix: settings.prefix)
        try await storage("delete \(id)") {
            for try await object in store.list(prefix: prefix) { try await store.delete(object.key) }
        }
        logger.debug("document deleted", metadata: ["engineDocumentId": "\(id)"])
    }

    public func shutdown() async throws {
        if ownsStore { try await store.shutdown() }
    }

    // MARK: Internals

    private struct Keys {
        var pdf: ObjectKey
        var annotations: ObjectKey
        var metadata: ObjectKey
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    private func keys(_ id: EngineDocumentID) throws(DocumentEngineError) -> Keys {
        try key { () throws(ObjectStorageError) in
            Keys(
                pdf: try DocumentEngineKeys.pdf(id, prefix: settings.prefix),
                annotations: try DocumentEngineKeys.annotations(id, prefix: settings.prefix),
                metadata: try DocumentEngineKeys.metadata(id, prefix: settings.prefix))
        }
    }

    func key<T>(_ make: () throws(ObjectStorageError) -> T) throws(DocumentEngineError) -> T {
        do {
            return try make()
        } catch {
            throw DocumentEngineError(.permanent, "no valid key: \(error.message)")
        }
    }

    /// Runs a storage operation, mapping its errors (``DocumentEngineError/storage(_:_:missing:)``).
    func storage<T>(_ what: String, missing: DocumentEngineError.Code = .notFound, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ObjectStorageError {
            throw DocumentEngineError.storage(error, what, missing: missing)
        }
    }

    private func readInfo(_ id: EngineDocumentID, keys: Keys) async throws -> EngineDocumentInfo? {
        let data: Data
        do {
            data = try await store.get(keys.metadata)
        } catch let error as ObjectStorageError where error.code == .notFound {
            return nil
        } catch let error as ObjectStorageError {
            throw DocumentEngineError.storage(error, "read the record of \(id)")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let info: EngineDocumentInfo
        do {
            info = try decoder.decode(EngineDocumentInfo.self, from: data)
        } catch {
            throw DocumentEngineError(.permanent, "the record of \(id) is damaged: \(error)")
        }
        guard info.version <= EngineDocumentInfo.currentVersion else {
            throw DocumentEngineError(.permanent, "the record of \(id) has version \(info.version); this build reads 1…\(EngineDocumentInfo.currentVersion)")
        }
        return info
    }

    /// Size and SHA-256 of the PDF, streamed for an object.
    private func hash(_ pdf: PDFSource) async throws -> (Int64, String) {
        switch pdf {
        case .bytes(let data):
            return (Int64(data.count), SHA256Hasher.hex(data))
        case .object(let key):
            return try await storage("read the PDF \(key)", missing: .sourceNotFound) {
                var hasher = SHA256Hasher()
                for try await chunk in try await sourceStore.stream(key) { hasher.update(chunk) }
                return (hasher.count, hasher.finalizeHex())
            }
        }
    }

    /// Puts the PDF at `destination`; returns the copied size when the store told it.
    private func transfer(_ pdf: PDFSource, to destination: ObjectKey, id: EngineDocumentID) async throws -> Int64? {
        switch pdf {
        case .bytes(let data):
            try await storage("write the PDF of \(id)") { try await store.put(destination, data, contentType: "application/pdf") }
            return Int64(data.count)
        case .object(let key) where sourceStore.location == store.location:
            return try await storage("copy the PDF \(key)", missing: .sourceNotFound) {
                try await store.quickCopy(from: key, to: destination)
            }
        case .object(let key):
            let file = (settings.temporaryDirectory as NSString).appendingPathComponent("exchanger-engine-\(UUID().uuidString).pdf")
            defer { try? FileManager.default.removeItem(atPath: file) }
            try await storage("fetch the PDF \(key)", missing: .sourceNotFound) { try await sourceStore.download(key, to: file) }
            try await storage("write the PDF of \(id)") { try await store.upload(file: file, to: destination, contentType: "application/pdf") }
            return try await storage("check the PDF of \(id)") { try await store.head(destination).size }
        }
    }

    private func removeAttachments(of id: EngineDocumentID, keeping: Set<String>) async throws {
        let prefix = DocumentEngineKeys.attachmentsPrefix(id, prefix: settings.prefix)
        try await storage("remove old attachments of \(id)") {
            var stale: [ObjectKey] = []
            for try await object in store.list(prefix: prefix) where !keeping.contains(String(object.key.rawValue.dropFirst(prefix.count))) {
                stale.append(object.key)
            }
            for key in stale { try await store.delete(key) }
        }
    }
}
