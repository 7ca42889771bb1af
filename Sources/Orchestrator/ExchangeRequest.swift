import Crypto
import ExchangerEvents
import Foundation

/// How one annotation type reaches the destination PDF.
public enum AnnotationRouting: String, Sendable, Hashable, Codable, CaseIterable {
    /// Flattened into the destination PDF (irreversible; redactions are applied first).
    case brandIn = "brand_in"
    /// Carried as an Instant JSON layer over the PDF (editable, lossless).
    case layer
}

/// Which documents of the source case an exchange copies: exactly one of a label, a folder or
/// explicit document ids.
public enum DocumentSelection: Sendable, Hashable {
    case label(Int64)
    case folder(Int64)
    /// Non-empty, unique ids, in the order given.
    case documents([Int64])

    /// The canonical text the derived idempotency key is computed from (document ids sorted).
    var canonical: String {
        switch self {
        case .label(let id): "label:\(id)"
        case .folder(let id): "folder:\(id)"
        case .documents(let ids): "documents:" + ids.sorted().map(String.init).joined(separator: ",")
        }
    }
}

/// Limits applied when a request is validated.
public struct RequestLimits: Sendable, Hashable {
    /// Most ids `documentIds` may hold (default 10,000; larger selections use a label or folder).
    public var maxDocumentIDs: Int = 10_000

    /// A value with the given fields.
    public init(maxDocumentIDs: Int = 10_000) {
        self.maxDocumentIDs = maxDocumentIDs
    }
}

/// An exchange request as the API receives it (JSON):
///
/// ```json
/// {"sourceCaseId": 41, "destinationCaseId": 42, "batchId": 7, "labelId": 3,
///  "requiresAnnotations": true, "includeNatives": false, "redactionsAs": "brand_in"}
/// ```
///
/// `sourceCaseId`, `destinationCaseId`, `batchId` are required positive integers; exactly one of
/// `labelId`, `folderId` (positive integers) or `documentIds` (non-empty, unique positive integers,
/// at most ``RequestLimits/maxDocumentIDs``; an id of 2^53 or more as a decimal string, e.g.
/// `"9007199254740993"`, since a JSON number is exact only below 2^53); `requiresAnnotations` and `includeNatives` default to
/// false; each of `redactionsAs`, `highlightsAs`, `notesAs`, `stickersAs`, `batesAs`,
/// `confidentialityCodesAs` is `brand_in` or `layer` and defaults to `layer` (the reference names no
/// default; `layer` loses nothing). Comments are always carried as a layer. `skipExchanged`
/// (default false) leaves out the documents an earlier finished exchange from the same source case
/// delivered into the destination case. Unknown fields are refused.
public struct ExchangeRequest: Sendable, Hashable, Codable {
    /// The case the documents are copied from.
    public var sourceCaseID: Int64
    /// The case the documents are copied to.
    public var destinationCaseID: Int64
    /// The destination case's batch the documents arrive in.
    public var batchID: Int64
    /// Which source documents are copied.
    public var selection: DocumentSelection
    /// Annotations are carried over (through the pre-uploader).
    public var requiresAnnotations: Bool
    /// Native files are copied too.
    public var includeNatives: Bool
    /// Redactions (`pspdfkit/markup/redaction`).
    public var redactionsAs: AnnotationRouting
    /// Highlights.
    public var highlightsAs: AnnotationRouting
    /// Notes.
    public var notesAs: AnnotationRouting
    /// Stickers (images).
    public var stickersAs: AnnotationRouting
    /// Bates stamps.
    public var batesAs: AnnotationRouting
    /// Confidentiality-code stamps.
    public var confidentialityCodesAs: AnnotationRouting
    /// Leave out documents an earlier, finished exchange from the same source case delivered into
    /// the destination case (their destination document still existing); they are reported as
    /// skipped. False (the default) copies them again, as new documents.
    public var skipExchanged: Bool
    /// The exchange this one retries (`POST /exchanges/{jobId}/retry`): its left-behind documents
    /// are the selection, and rows that exchange copied keep their destination ids. Set by the
    /// orchestrator, never by a client: the API refuses the field in a request body.
    public var retryOf: String?

    /// The routing every annotation type gets when the request does not name one.
    public static let defaultRouting: AnnotationRouting = .layer

    /// The JSON field names, in their wire spelling.
    public static let fields: Set<String> = [
        "sourceCaseId", "destinationCaseId", "batchId", "labelId", "folderId", "documentIds", "requiresAnnotations",
        "includeNatives", "redactionsAs", "highlightsAs", "notesAs", "stickersAs", "batesAs", "confidentialityCodesAs",
        "skipExchanged",
    ]

    /// A request built in code; check it with ``validate(limits:)``.
    public init(
        sourceCaseID: Int64, destinationCaseID: Int64, batchID: Int64, selection: DocumentSelection,
        requiresAnnotations: Bool = false, includeNatives: Bool = false, redactionsAs: AnnotationRouting = defaultRouting,
        highlightsAs: AnnotationRouting = defaultRouting, notesAs: AnnotationRouting = defaultRouting,
        stickersAs: AnnotationRouting = defaultRouting, batesAs: AnnotationRouting = defaultRouting,
        confidentialityCodesAs: AnnotationRouting = defaultRouting, skipExchanged: Bool = false
    ) {
        self.sourceCaseID = sourceCaseID
        self.destinationCaseID = destinationCaseID
        self.batchID = batchID
        self.selection = selection
        self.requiresAnnotations = requiresAnnotations
        self.includeNatives = includeNatives
        self.redactionsAs = redactionsAs
        self.highlightsAs = highlightsAs
        self.notesAs = notesAs
        self.stickersAs = stickersAs
        self.batesAs = batesAs
        self.confidentialityCodesAs = confidentialityCodesAs
        self.skipExchanged = skipExchanged
    }

    /// Parses and validates a request body.
    /// - Throws: ``OrchestratorError/Code/invalidRequest`` with the field at fault and the reason.
    public static func parse(_ body: Data, limits: RequestLimits = .init()) throws(OrchestratorError) -> ExchangeRequest {
        let object: [String: JSONValue]
        do {
            object = try EventCoding.decoder.decode([String: JSONValue].self, from: body)
        } catch {
            throw OrchestratorError(.invalidRequest, "the body is not a JSON object", field: "$")
        }
        return try parse(object, limits: limits)
    }

    /// Validates a decoded JSON object (see ``parse(_:limits:)``).
    public static func parse(_ object: [String: JSONValue], limits: RequestLimits = .init()) throws(OrchestratorError) -> ExchangeRequest {
        try parse(object, limits: limits, stored: false)
    }

    /// `stored`: a request the orchestrator wrote, which may carry `retryOf`.
    private static func parse(
        _ object: [String: JSONValue], limits: RequestLimits, stored: Bool
    ) throws(OrchestratorError) -> ExchangeRequest {
        if let unknown = object.keys.sorted().first(where: { !fields.contains($0) && !(stored && $0 == "retryOf") }) {
            throw OrchestratorError(.invalidRequest, "unknown field", field: unknown)
        }
        let source = try requiredID(object, "sourceCaseId")
        let destination = try requiredID(object, "destinationCaseId")
        let batch = try requiredID(object, "batchId")
        let given = ["labelId", "folderId", "documentIds"].filter { object[$0] != nil && object[$0] != .null }
        guard given.count == 1 else {
            let reason = given.isEmpty
                ? "exactly one of labelId, folderId, documentIds is required"
                : "exactly one of labelId, folderId, documentIds may be given, not \(given.joined(separator: " and "))"
            throw OrchestratorError(.invalidRequest, reason, field: given.isEmpty ? "labelId" : given[1])
        }
        let selection: DocumentSelection
        switch given[0] {
        case "labelId": selection = .label(try requiredID(object, "labelId"))
        case "folderId": selection = .folder(try requiredID(object, "folderId"))
        default:
            guard case .array(let values) = object["documentIds"] else {
                throw OrchestratorError(.invalidRequest, "must be an array of positive integers", field: "documentIds")
            }
            var ids: [Int64] = []
            for (index, value) in values.enumerated() {
                ids.append(try documentID(value, field: "documentIds[\(index)]"))
            }
            selection = .documents(ids)
        }
        var request = ExchangeRequest(
            sourceCaseID: source, destinationCaseID: destination, batchID: batch, selection: selection,
            requiresAnnotations: try optionalBool(object, "requiresAnnotations"),
            includeNatives: try optionalBool(object, "includeNatives"))
        request.redactionsAs = try routing(object, "redactionsAs")
        request.highlightsAs = try routing(object, "highlightsAs")
        request.notesAs = try routing(object, "notesAs")
        request.stickersAs = try routing(object, "stickersAs")
        request.batesAs = try routing(object, "batesAs")
        request.confidentialityCodesAs = try routing(object, "confidentialityCodesAs")
        request.skipExchanged = try optionalBool(object, "skipExchanged")
        switch object["retryOf"] {
        case nil, .null?: break
        case .string(let job)? where !job.isEmpty && job.utf8.count <= 200: request.retryOf = job
        default: throw OrchestratorError(.invalidRequest, "must be a job id", field: "retryOf")
        }
        try request.validate(limits: limits)
        return request
    }

    /// Checks the ranges a request built in code might violate.
    /// - Throws: ``OrchestratorError/Code/invalidRequest`` naming the field.
    public func validate(limits: RequestLimits = .init()) throws(OrchestratorError) {
        for (field, value) in [("sourceCaseId", sourceCaseID), ("destinationCaseId", destinationCaseID), ("batchId", batchID)]
        where value <= 0 {
            throw OrchestratorError(.invalidRequest, "must be a positive integer, not \(value)", field: field)
        }
        guard destinationCaseID != sourceCaseID else {
            throw OrchestratorError(.invalidRequest, "must differ from sourceCaseId (a case is not exchanged into itself)", field: "destinationCaseId")
        }
        switch selection {
        case .label(let id) where id <= 0:
            throw OrchestratorError(.invalidRequest, "must be a positive integer, not \(id)", field: "labelId")
        case .folder(let id) where id <= 0:
            throw OrchestratorError(.invalidRequest, "must be a positive integer, not \(id)", field: "folderId")
        case .documents(let ids):
            guard !ids.isEmpty else { throw OrchestratorError(.invalidRequest, "must not be empty", field: "documentIds") }
            guard ids.count <= limits.maxDocumentIDs else {
                throw OrchestratorError(.invalidRequest,
                    "holds \(ids.count) ids; at most \(limits.maxDocumentIDs) are allowed (select by label or folder instead)",
                    field: "documentIds")
            }
            var seen = Set<Int64>()
            for (index, id) in ids.enumerated() {
                guard id > 0 else {
                    throw OrchestratorError(.invalidRequest, "must be a positive integer, not \(id)", field: "documentIds[\(index)]")
                }
                guard seen.insert(id).inserted else {
                    throw OrchestratorError(.invalidRequest, "document id \(id) is given twice", field: "documentIds[\(index)]")
                }
            }
        default:
            break
        }
    }

    /// The idempotency key stored for this request: the client's (`Idempotency-Key` header) when
    /// given, else derived from source case, destination case, batch and selection (SHA-256), and
    /// `skipExchanged` when it is true (so a skipping repeat of a request is a new exchange), and
    /// `retryOf` when set (a retry is never the exchange it retries).
    /// - Throws: ``OrchestratorError/Code/invalidRequest`` (field `Idempotency-Key`) for an empty
    ///   key, one over 200 bytes, or one with control characters.
    public func idempotencyKey(client: String? = nil) throws(OrchestratorError) -> String {
        if let client {
            guard !client.isEmpty, client.utf8.count <= 200,
                !client.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
            else {
                throw OrchestratorError(.invalidRequest, "must be 1–200 bytes without control characters", field: "Idempotency-Key")
            }
            return "client:" + client
        }
        let input = "exchange-request/v1\u{1F}\(sourceCaseID)\u{1F}\(destinationCaseID)\u{1F}\(batchID)\u{1F}\(selection.canonical)"
            + (skipExchanged ? "\u{1F}skipExchanged" : "") + (retryOf.map { "\u{1F}retryOf:" + $0 } ?? "")
        return "sha256:" + SHA256.hash(data: Data(input.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Equal, except that explicit document ids may come in another order (they select the same
    /// documents, and derive the same idempotency key).
    public func isEquivalent(to other: ExchangeRequest) -> Bool {
        var a = self, b = other
        if case .documents(let ids) = a.selection { a.selection = .documents(ids.sorted()) }
        if case .documents(let ids) = b.selection { b.selection = .documents(ids.sorted()) }
        return a == b
    }

    // MARK: Codable (the wire form; decoding validates everything but the size limit, which is
    // the API's to apply with ``parse(_:limits:)``: a stored request accepted under a larger limit
    // must stay readable)

    private enum CodingKeys: String, CodingKey {
        case sourceCaseID = "sourceCaseId", destinationCaseID = "destinationCaseId", batchID = "batchId", labelID = "labelId"
        case folderID = "folderId", documentIDs = "documentIds", requiresAnnotations, includeNatives, redactionsAs
        case highlightsAs, notesAs, stickersAs, batesAs, confidentialityCodesAs, skipExchanged, retryOf
    }

    /// A value with the given fields.
    public init(from decoder: any Decoder) throws {
        let object = try decoder.singleValueContainer().decode([String: JSONValue].self)
        self = try Self.parse(object, limits: RequestLimits(maxDocumentIDs: .max), stored: true)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sourceCaseID, forKey: .sourceCaseID)
        try container.encode(destinationCaseID, forKey: .destinationCaseID)
        try container.encode(batchID, forKey: .batchID)
        switch selection {
        case .label(let id): try container.encode(id, forKey: .labelID)
        case .folder(let id): try container.encode(id, forKey: .folderID)
        case .documents(let ids):
            // As the API takes them: a JSON number below 2^53, a decimal string from there on (a
            // number would be read back rounded).
            let values = ids.map { id in id > -9_007_199_254_740_992 && id < 9_007_199_254_740_992 ? JSONValue.number(Double(id)) : .string(String(id)) }
            try container.encode(values, forKey: .documentIDs)
        }
        try container.encode(requiresAnnotations, forKey: .requiresAnnotations)
        try container.encode(includeNatives, forKey: .includeNatives)
        try container.encode(redactionsAs, forKey: .redactionsAs)
        try container.encode(highlightsAs, forKey: .highlightsAs)
        try container.encode(notesAs, forKey: .notesAs)
        try container.encode(stickersAs, forKey: .stickersAs)
        try container.encode(batesAs, forKey: .batesAs)
        try container.encode(confidentialityCodesAs, forKey: .confidentialityCodesAs)
        // Only when set: a stored request of an older build reads back the same.
        if skipExchanged { try container.encode(true, forKey: .skipExchanged) }
        try container.encodeIfPresent(retryOf, forKey: .retryOf)
    }

    // MARK: Field checks

    private static func requiredID(_ object: [String: JSONValue], _ field: String) throws(OrchestratorError) -> Int64 {
        guard let value = object[field], value != .null else { throw OrchestratorError(.invalidRequest, "is required", field: field) }
        return try positiveID(value, field: field)
    }

    private static func positiveID(_ value: JSONValue, field: String) throws(OrchestratorError) -> Int64 {
        guard case .number(let number) = value, number.rounded() == number, abs(number) < 9_007_199_254_740_992,
            let id = Int64(exactly: number)
        else { throw OrchestratorError(.invalidRequest, "must be a positive integer", field: field) }
        guard id > 0 else { throw OrchestratorError(.invalidRequest, "must be a positive integer, not \(id)", field: field) }
        return id
    }

    /// A document id: a JSON integer below 2^53 (a JSON number is a double, exact only up to
    /// there) or a decimal string, which carries any positive 64-bit id exactly.
    private static func documentID(_ value: JSONValue, field: String) throws(OrchestratorError) -> Int64 {
        switch value {
        case .string(let text):
            guard !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let id = Int64(text), id > 0 else {
                throw OrchestratorError(
                    .invalidRequest, "must be a positive integer, or a decimal string of one up to 9223372036854775807", field: field)
            }
            return id
        case .number(let number) where abs(number) >= 9_007_199_254_740_992:
            throw OrchestratorError(
                .invalidRequest, "a JSON number of 2^53 or more is not exact: send this id as a decimal string", field: field)
        default:
            return try positiveID(value, field: field)
        }
    }

    private static func optionalBool(_ object: [String: JSONValue], _ field: String) throws(OrchestratorError) -> Bool {
        switch object[field] {
        case nil, .null?: return false
        case .bool(let value)?: return value
        default: throw OrchestratorError(.invalidRequest, "must be true or false", field: field)
        }
    }

    private static func routing(_ object: [String: JSONValue], _ field: String) throws(OrchestratorError) -> AnnotationRouting {
        switch object[field] {
        case nil, .null?: return defaultRouting
        case .string(let text)?:
            guard let routing = AnnotationRouting(rawValue: text) else {
                throw OrchestratorError(.invalidRequest, "must be \"brand_in\" or \"layer\", not \"\(text.prefix(40))\"", field: field)
            }
            return routing
        default: throw OrchestratorError(.invalidRequest, "must be \"brand_in\" or \"layer\"", field: field)
        }
    }
}
