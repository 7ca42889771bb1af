import Broker
import CaseData
import CaseDatabase
import DatabaseSupport
import DocumentEngine
import ExchangerEvents
import Foundation
import ObjectStorage
import Orchestrator

/// What the annotation check of ``ExchangeVerifier`` found.
struct AnnotationCheckOutcome: Sendable {
    /// Documents whose engine document, annotations, text files and index rows were checked.
    var documents = 0
    /// Layer annotations compared with their source annotations.
    var layerAnnotations = 0
    /// Source annotations that had to be branded into the destination PDF.
    var brandedIn = 0
    /// Page text files compared with the engine's page text.
    var pageTexts = 0
    /// Index rows compared with the page text.
    var indexedPages = 0
    /// Branded-in redactions proven to leave no covered word in the PDF, its page text and index.
    var redactions = 0
}

/// The annotation kinds of the request, told apart by the vendor's type names — independently of
/// the pre-uploader's own sorting, so the check does not share its mistakes.
enum VerifiedAnnotationKind: String, CaseIterable {
    case redactions, highlights, notes, stickers, bates, confidentialityCodes, comments, other

    init(_ annotation: InstantJSONAnnotation) {
        let object = (try? JSONSerialization.jsonObject(with: Data(annotation.json.utf8))) as? [String: Any] ?? [:]
        if object["isCommentThreadRoot"] as? Bool == true {
            self = .comments
            return
        }
        let stampType = (object["customData"] as? [String: Any])?["stampType"] as? String
        switch annotation.type {
        case "pspdfkit/markup/redaction": self = .redactions
        case "pspdfkit/markup/highlight": self = .highlights
        case "pspdfkit/note": self = .notes
        case "pspdfkit/image": self = .stickers
        case "pspdfkit/text" where stampType == "bates_stamp": self = .bates
        case "pspdfkit/text" where stampType == "confidentiality_stamp": self = .confidentialityCodes
        default: self = .other
        }
    }

    /// Whether the request brands this kind into the PDF (comment roots and other types never are).
    func brandsIn(_ request: ExchangeRequest) -> Bool {
        let routing: AnnotationRouting? =
            switch self {
            case .redactions: request.redactionsAs
            case .highlights: request.highlightsAs
            case .notes: request.notesAs
            case .stickers: request.stickersAs
            case .bates: request.batesAs
            case .confidentialityCodes: request.confidentialityCodesAs
            case .comments, .other: nil
            }
        return routing == .brandIn
    }
}

extension ExchangeVerifier {
    /// The annotation path's result, per copied document (not those not found):
    /// - the destination engine holds the document under the id DOCUMENT_UPLOADED names, which is
    ///   `document_{dest}_{batch}_{newDocumentId}_{…}`;
    /// - its annotations are exactly the source document's layer-routed ones (and comment roots),
    ///   byte for byte in canonical Instant JSON, with the attachments they use; none of the
    ///   brand_in kinds is left as an annotation, and when any was branded in, the destination PDF
    ///   differs from the source PDF;
    /// - its comment threads equal the source's;
    /// - every page's text is at `case_{dest}/processed-files/{batch}/txt/{doc}/attachments/{page}/content.txt`,
    ///   equal to the engine's page text, and in the destination case's full-text index, one row a page.
    func checkAnnotations(
        record: ExchangeRecord, documents: [Int64: Int64], notFound: Set<Int64>, engine: any DocumentEngine,
        problems: inout ProblemList
    ) async throws -> AnnotationCheckOutcome {
        var outcome = AnnotationCheckOutcome()
        let request = record.request
        let engineIDs = try await documentEngineIDs(jobID: record.jobID)
        let index = SearchIndexStore(
            settings: try CaseDatabaseSettings(locator: caseDatabases.locator, maxOpenConnections: 2), logger: logger)
        for (old, new) in documents.sorted(by: { $0.key < $1.key }) where !notFound.contains(new) {
            guard let ids = engineIDs[new], let sourceText = ids.source, let destinationText = ids.destination else {
                problems.add("document \(new) (source \(old)) has no DOCUMENT_PRE_PROCESSED / DOCUMENT_UPLOADED event naming its engine documents")
                continue
            }
            let sourceID: EngineDocumentID
            let destinationID: EngineDocumentID
            do {
                sourceID = try EngineDocumentID(parsing: sourceText)
                destinationID = try EngineDocumentID(parsing: destinationText)
            } catch {
                problems.add("document \(new): engine document ids \(sourceText) / \(destinationText) are malformed: \(error)")
                continue
            }
            if sourceID.caseID != record.sourceCaseID || sourceID.documentID != old {
                problems.add("document \(new): its source engine document \(sourceID) is not of source case \(record.sourceCaseID) document \(old)")
            }
            if destinationID.caseID != record.destinationCaseID || destinationID.batchID != request.batchID || destinationID.documentID != new {
                problems.add("document \(new): its engine document \(destinationID) is not document_\(record.destinationCaseID)_\(request.batchID)_\(new)_…")
            }
            outcome.documents += 1
            await checkDocumentAnnotations(
                old: old, new: new, source: sourceID, destination: destinationID, request: request, engine: engine,
                outcome: &outcome, problems: &problems)
            await checkPageTexts(new: new, destination: destinationID, caseID: record.destinationCaseID, batchID: request.batchID,
                engine: engine, index: index, outcome: &outcome, problems: &problems)
        }
        await index.shutdown()
        return outcome
    }

    private func checkDocumentAnnotations(
        old: Int64, new: Int64, source: EngineDocumentID, destination: EngineDocumentID, request: ExchangeRequest,
        engine: any DocumentEngine, outcome: inout AnnotationCheckOutcome, problems: inout ProblemList
    ) async {
        do {
            let sourceAnnotations = try await engine.annotations(source)
            let destinationAnnotations = try await engine.annotations(destination)
            var expected: [String] = []
            var branded = 0
            var redactions: [InstantJSONAnnotation] = []
            for annotation in sourceAnnotations.annotations {
                let kind = VerifiedAnnotationKind(annotation)
                if kind.brandsIn(request) { branded += 1 } else { expected.append(annotation.json) }
                if kind == .redactions, kind.brandsIn(request) { redactions.append(annotation) }
            }
            outcome.brandedIn += branded
            let actual = destinationAnnotations.annotations.map(\.json)
            if actual.sorted() != expected.sorted() {
                let missing = Set(expected).subtracting(actual).count
                let extra = Set(actual).subtracting(expected).count
                problems.add("document \(new): engine document \(destination) has \(actual.count) annotations, expected the \(expected.count) layer ones of \(source) (\(missing) missing, \(extra) unexpected)")
            }
            for annotation in destinationAnnotations.annotations where VerifiedAnnotationKind(annotation).brandsIn(request) {
                problems.add("document \(new): annotation \(annotation.id ?? "?") (\(annotation.type ?? "?")) should have been branded in, but is a layer annotation")
            }
            outcome.layerAnnotations += actual.count
            // Attachments the layer annotations use travel with them, byte for byte.
            let sourceAttachments = Dictionary(sourceAnnotations.attachments.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            for attachment in destinationAnnotations.attachments where sourceAttachments[attachment.id] != attachment {
                problems.add("document \(new): attachment \(attachment.id) differs from the source's")
            }
            for annotation in destinationAnnotations.annotations {
                guard let object = (try? JSONSerialization.jsonObject(with: Data(annotation.json.utf8))) as? [String: Any],
                    let attachmentID = object["imageAttachmentId"] as? String
                else { continue }
                if !destinationAnnotations.attachments.contains(where: { $0.id == attachmentID }) {
                    problems.add("document \(new): layer annotation \(annotation.id ?? "?") refers to attachment \(attachmentID), which the engine document lacks")
                }
            }
            if branded > 0 {
                let sourcePDF = try await engine.info(source)
                let destinationPDF = try await engine.info(destination)
                if sourcePDF.sha256 == destinationPDF.sha256 {
                    problems.add("document \(new): \(branded) annotations were to be branded in, but its PDF is the source PDF unchanged")
                }
            }
            outcome.redactions += await checkRedactions(
                new: new, source: source, destination: destination, redactions: redactions, engine: engine, problems: &problems)
            let sourceThreads = try await engine.commentThreads(source)
            let destinationThreads = try await engine.commentThreads(destination)
            if Self.threadKey(sourceThreads) != Self.threadKey(destinationThreads) {
                problems.add("document \(new): \(destinationThreads.count) comment threads, not the source's \(sourceThreads.count) with the same comments")
            }
        } catch {
            problems.add("document \(new): cannot read its annotations from the document engine: \(error)")
        }
    }

    private static func threadKey(_ threads: [CommentThread]) -> [String] {
        threads.map { thread in thread.rootID + "\n" + thread.comments.map(\.json).sorted().joined(separator: "\n") }.sorted()
    }

    private func checkPageTexts(
        new: Int64, destination: EngineDocumentID, caseID: Int64, batchID: Int64, engine: any DocumentEngine, index: SearchIndexStore,
        outcome: inout AnnotationCheckOutcome, problems: inout ProblemList
    ) async {
        do {
            let pages = try await engine.pageCount(destination)
            let indexed = try await index.pages(documentID: new, caseID: caseID)
            let byPosition = Dictionary(indexed.map { ($0.position, $0.text) }, uniquingKeysWith: { first, _ in first })
            if indexed.count != pages {
                problems.add("document \(new): the full-text index has \(indexed.count) pages, the engine document \(pages)")
            }
            for page in 0..<pages {
                let text = try await engine.pageText(destination, pageIndex: page)
                let key = try CaseKeys.attachmentText(caseID: caseID, batchID: batchID, documentID: new, position: page)
                do {
                    let stored = try await store.get(key)
                    if stored != Data(text.utf8) {
                        problems.add("document \(new): \(key) (\(stored.count) bytes) is not the engine's text of page \(page) (\(text.utf8.count) bytes)")
                    }
                    outcome.pageTexts += 1
                } catch let error as ObjectStorageError where error.code == .notFound {
                    problems.add("document \(new): the text of page \(page) is missing at \(key)")
                }
                if let row = byPosition[page] {
                    if row != text { problems.add("document \(new): the index row of page \(page) differs from the page's text") }
                    outcome.indexedPages += 1
                } else {
                    problems.add("document \(new): page \(page) is not in the full-text index")
                }
            }
        } catch {
            problems.add("document \(new): cannot check its page texts: \(error)")
        }
    }

    /// Destination document id → the source and destination engine document ids, from the
    /// detail of the job's DOCUMENT_PRE_PROCESSED and DOCUMENT_UPLOADED events.
    private func documentEngineIDs(jobID: String) async throws -> [Int64: (source: String?, destination: String?)] {
        let rows = try await broker.transaction { tx in
            let postgres = tx.dialect == .postgres
            let (type, job) = postgres
                ? ("(attributes->'eventType'->>'value')", "(attributes->'jobId'->>'value')")
                : ("json_extract(attributes, '$.eventType.value')", "json_extract(attributes, '$.jobId.value')")
            let sql = "SELECT \(type) AS t, body FROM broker_events WHERE \(job) = $1 AND \(type) IN ($2, $3) ORDER BY seq"
            return try await tx.query(
                postgres ? sql : SQLPlaceholders.sqlite(sql),
                [.text(jobID), .text(EventType.documentPreProcessed.rawValue), .text(EventType.documentUploaded.rawValue)])
        }
        var result: [Int64: (source: String?, destination: String?)] = [:]
        for row in rows {
            guard let body = row["body"].string,
                let object = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any],
                let document = (object["documentId"] as? NSNumber)?.int64Value,
                let detail = object["detail"] as? [String: Any]
            else { continue }
            var entry = result[document] ?? (nil, nil)
            if row["t"].string == EventType.documentPreProcessed.rawValue {
                entry.source = detail["sourceEngineDocumentId"] as? String
            } else {
                entry.destination = detail["engineDocumentId"] as? String
            }
            result[document] = entry
        }
        return result
    }
}
