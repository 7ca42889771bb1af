import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import ObjectStorage

/// Nutrient Document Engine over HTTP.
///
/// Wire format (Document Engine's server API, checked against Nutrient's public API reference,
/// https://www.nutrient.io/api/reference/document-engine/upstream/ — OpenAPI 1.9.0 as published in
/// github.com/PSPDFKit/nutrient-document-engine-mcp-server `src/api/document-engine-api.yml` — and the guide
/// https://www.nutrient.io/guides/document-engine/annotations/import-and-export/instant-json/):
/// - every request carries `Authorization: Token token="…"` (the API token); the token comes from
///   ``NutrientTokenCache`` (one per process), never from code;
/// - upload: `POST /api/documents`, `multipart/form-data` with `document_id`, `file` (the PDF),
///   `attachment` (an Instant JSON document to import, when there are annotations) and
///   `overwrite_existing_document=true`, so a re-upload with the same id replaces the document;
/// - `GET /api/documents/{id}/document_info` (`{"data":{"pageCount":…}}`; 404 when absent),
///   `GET /api/documents/{id}/pdf`, `DELETE /api/documents/{id}`;
/// - layers: `GET /api/documents/{id}/layers/{layer}/document.json` (Instant JSON);
/// - annotations: `GET /api/documents/{id}/annotations` with `Accept: application/x-ndjson` (the
///   `application/json` form, `{"data":{"annotations":[…],"truncated":…}}`, stops at 1,000 annotations);
///   each record is `{"id":…,"content":{…Instant JSON…},"createdBy":…,"updatedBy":…,"group":…}`. The reference
///   does not spell out the shape of one NDJSON line: that it is that same record is an assumption
///   (``unwrap(_:what:)`` also takes a bare Instant JSON object);
///   image attachments: `GET /api/documents/{id}/attachments/{attachmentId}`;
/// - comments: `GET`/`POST /api/documents/{id}/annotations/{rootId}/comments`; the listing is
///   `{"data":{"comments":[{"id":…,"content":{…},…}]}}`, the request `{"comments":[{"id":…,"content":{"text":…,
///   "creatorName":…,"createdAt":…,"updatedAt":…,"customData":…}}]}` (answered `{"data":{"comments":[{"id":…}]}}`);
/// - build: `POST /api/build`, multipart with `instructions`
///   `{"parts":[{"file":"document"}],"actions":[{"type":"applyInstantJson","file":"annotations"},
///   {"type":"applyRedactions"},{"type":"flatten"}],"output":{"type":"pdf"}}`, the PDF part
///   `document` and the Instant JSON part `annotations`; the response is the PDF;
/// - page text: `GET /api/documents/{id}/pages/{pageIndex}/text` (`{"textLines":[{"contents":…}]}`).
///
/// Not confirmed literally in the documentation read: the `"output":{"type":"pdf"}` spelling of the build
/// output (the reference names a `PDFOutput` schema), and the NDJSON line shape noted above.
///
/// Errors: 5xx, 429, timeouts and connection errors are retried (``Settings/maxAttempts``, full
/// jitter) and then reported transient; 404 is `notFound`; a 401 drops the cached token and is
/// tried once more with a fresh one; any other 4xx is permanent.
///
/// Ingest re-uploads with overwrite: ingesting the same content again leaves the same document
/// (outcome ``IngestResult/Outcome/replaced``, not `unchanged`: the engine keeps no checksum to compare).
public struct NutrientDocumentEngine: DocumentEngine {
    /// How the client talks to the engine.
    public struct Settings: Sendable, Hashable {
        /// `EXCHANGER_NUTRIENT_TIMEOUT_SECONDS`: deadline of one request (default 60).
        public static let timeoutVariable = "EXCHANGER_NUTRIENT_TIMEOUT_SECONDS"
        /// `EXCHANGER_NUTRIENT_MAX_ATTEMPTS`: attempts of a request that fails transiently (default 4).
        public static let attemptsVariable = "EXCHANGER_NUTRIENT_MAX_ATTEMPTS"

        /// The engine's base URL, `http(s)://host:port` (no trailing slash).
        public var baseURL: String
        /// Deadline of one request, the response body included (default 60 s).
        public var requestTimeout: Duration = .seconds(60)
        /// Connect timeout (default 10 s).
        public var connectTimeout: Duration = .seconds(10)
        /// Attempts of a transiently failing request (default 4).
        public var maxAttempts: Int = 4
        /// First retry delay; doubles per attempt with full jitter, capped at ``retryCap`` (default 200 ms).
        public var retryBase: Duration = .milliseconds(200)
        /// Longest retry delay (default 5 s).
        public var retryCap: Duration = .seconds(5)
        /// Largest response body read (default 1 GiB).
        public var maxResponseBytes: Int = 1 << 30

        public init(baseURL: String) {
            self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        }

        /// Settings for `baseURL` with the timeout and attempts of the environment.
        public init(baseURL: String, environment: [String: String]) throws(DocumentEngineError) {
            self.init(baseURL: baseURL)
            if let text = environment[Self.timeoutVariable], !text.isEmpty {
                guard let value = Double(text), value > 0, value <= 3600 else {
                    throw DocumentEngineError(.invalidURL, "\(Self.timeoutVariable)='\(text.prefix(40))' must be seconds in (0, 3600]")
                }
                requestTimeout = .milliseconds(Int64(value * 1000))
            }
            if let text = environment[Self.attemptsVariable], !text.isEmpty {
                guard let value = Int(text), (1...20).contains(value) else {
                    throw DocumentEngineError(.invalidURL, "\(Self.attemptsVariable)='\(text.prefix(40))' must be an integer in 1…20")
                }
                maxAttempts = value
            }
        }
    }

    public let settings: Settings
    /// Where ``PDFSource/object(_:)`` keys are read from (the case storage).
    public let sourceStore: any ObjectStore
    public let tokens: NutrientTokenCache
    private let client: HTTPClient
    private let logger: Logger

    /// A client for the engine at `settings.baseURL`; call ``shutdown()`` once when done.
    public init(settings: Settings, sourceStore: any ObjectStore, tokens: NutrientTokenCache, logger: Logger = Logger(label: "exchanger.document-engine")) {
        self.settings = settings
        self.sourceStore = sourceStore
        self.tokens = tokens
        self.logger = logger
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(
                connect: Self.timeAmount(settings.connectTimeout), read: Self.timeAmount(settings.requestTimeout)),
            decompression: .disabled)
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    // MARK: DocumentEngine

    @discardableResult
    public func ingest(_ id: EngineDocumentID, pdf: PDFSource, annotations: InstantJSON) async throws -> IngestResult {
        let bytes: Data
        switch pdf {
        case .bytes(let data): bytes = data
        case .object(let key):
            do {
                bytes = try await sourceStore.get(key)
            } catch let error as ObjectStorageError {
                throw DocumentEngineError.storage(error, "read the PDF \(key)", missing: .sourceNotFound)
            }
        }
        let existed = try await exists(id)
        var form = MultipartForm()
        form.field("document_id", id.rawValue)
        form.field("overwrite_existing_document", "true")
        form.file("file", filename: "document.pdf", contentType: "application/pdf", bytes)
        let annotationsDocument = try annotations.documentData()
        if !annotations.isEmpty {
            form.file("attachment", filename: "annotations.json", contentType: "application/json", annotationsDocument)
        }
        _ = try await request(.POST, "/api/documents", body: form.closed, contentType: form.contentType, what: "upload \(id)")
        let info = EngineDocumentInfo(
            id: id, bytes: Int64(bytes.count), sha256: SHA256Hasher.hex(bytes), annotationCount: annotations.annotations.count,
            annotationsSHA256: SHA256Hasher.hex(annotationsDocument),
            attachments: annotations.attachments.map {
                EngineDocumentInfo.Attachment(id: $0.id, contentType: $0.contentType, bytes: Int64($0.data.count), sha256: SHA256Hasher.hex($0.data))
            },
            ingestedAt: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)))
        return IngestResult(outcome: existed ? .replaced : .created, document: info)
    }

    public func exists(_ id: EngineDocumentID) async throws -> Bool {
        do {
            _ = try await request(.GET, path(id, "document_info"), what: "check \(id)")
            return true
        } catch let error as DocumentEngineError where error.code == .notFound {
            return false
        }
    }

    public func info(_ id: EngineDocumentID) async throws -> EngineDocumentInfo {
        let pdf = try await document(id)
        let annotations = try await annotations(id)
        return EngineDocumentInfo(
            id: id, bytes: Int64(pdf.count), sha256: SHA256Hasher.hex(pdf), annotationCount: annotations.annotations.count,
            annotationsSHA256: SHA256Hasher.hex(try annotations.documentData()),
            attachments: annotations.attachments.map {
                EngineDocumentInfo.Attachment(id: $0.id, contentType: $0.contentType, bytes: Int64($0.data.count), sha256: SHA256Hasher.hex($0.data))
            },
            ingestedAt: Date(timeIntervalSince1970: 0))
    }

    public func document(_ id: EngineDocumentID) async throws -> Data {
        try await request(.GET, path(id, "pdf"), accept: "application/pdf", what: "download \(id)").body
    }

    public func annotations(_ id: EngineDocumentID) async throws -> InstantJSON {
        let annotations = try await annotationList(id)
        var attachments: [InstantJSONAttachment] = []
        var seen = Set<String>()
        for annotation in annotations where annotation.type == "pspdfkit/image" {
            guard let object = try annotation.object() as? [String: Any], let attachmentID = object["imageAttachmentId"] as? String,
                  seen.insert(attachmentID).inserted
            else { continue }
            let response = try await request(
                .GET, path(id, "attachments/\(Self.pathSegment(attachmentID))"), accept: "*/*", what: "attachment \(attachmentID) of \(id)")
            let contentType = (object["contentType"] as? String) ?? response.contentType ?? "application/octet-stream"
            attachments.append(try InstantJSONAttachment(id: attachmentID, contentType: contentType, data: response.body))
        }
        return try InstantJSON(annotations: annotations, attachments: attachments)
    }

    public func delete(_ id: EngineDocumentID) async throws {
        do {
            _ = try await request(.DELETE, path(id, nil), what: "delete \(id)")
        } catch let error as DocumentEngineError where error.code == .notFound {
            return
        }
    }

    public func shutdown() async throws {
        try await client.shutdown()
    }

    public func commentThreads(_ id: EngineDocumentID) async throws -> [CommentThread] {
        var threads: [CommentThread] = []
        for annotation in try await annotationList(id) {
            guard let object = try annotation.object() as? [String: Any], (object["isCommentThreadRoot"] as? Bool) == true,
                  let rootID = annotation.id
            else { continue }
            threads.append(CommentThread(rootID: rootID, comments: try await comments(id, rootID: rootID)))
        }
        return threads
    }

    public func putCommentThreads(_ id: EngineDocumentID, _ threads: [CommentThread]) async throws {
        for thread in threads {
            let known = Set(try await comments(id, rootID: thread.rootID).compactMap(\.id))
            let new = thread.comments.filter { comment in comment.id.map { !known.contains($0) } ?? true }
            guard !new.isEmpty else { continue }
            let body = Data(("{\"comments\":[" + (try new.map(Self.commentCreate)).joined(separator: ",") + "]}").utf8)
            _ = try await request(
                .POST, path(id, "annotations/\(Self.pathSegment(thread.rootID))/comments"), body: body, contentType: "application/json",
                what: "add comments to \(thread.rootID) of \(id)")
        }
    }

    public func buildFlattened(pdf: Data, annotations: InstantJSON) async throws -> Data {
        var actions = [#"{"type":"applyInstantJson","file":"annotations"}"#, #"{"type":"applyRedactions"}"#, #"{"type":"flatten"}"#]
        if annotations.isEmpty { actions.removeFirst() }
        let instructions = #"{"parts":[{"file":"document"}],"actions":["# + actions.joined(separator: ",") + #"],"output":{"type":"pdf"}}"#
        var form = MultipartForm()
        form.file("instructions", filename: nil, contentType: "application/json", Data(instructions.utf8))
        form.file("document", filename: "document.pdf", contentType: "application/pdf", pdf)
        if !annotations.isEmpty {
            form.file("annotations", filename: "annotations.json", contentType: "application/json", try annotations.documentData())
        }
        return try await request(.POST, "/api/build", body: form.closed, contentType: form.contentType, accept: "application/pdf", what: "build").body
    }

    public func pageCount(_ id: EngineDocumentID) async throws -> Int {
        let response = try await request(.GET, path(id, "document_info"), what: "info of \(id)")
        let root = try Self.jsonObject(response.body, what: "document_info of \(id)")
        let data = (root["data"] as? [String: Any]) ?? root
        guard let count = (data["pageCount"] as? NSNumber)?.intValue, count >= 0 else {
            throw DocumentEngineError(.permanent, "document_info of \(id) has no pageCount")
        }
        return count
    }

    public func pageText(_ id: EngineDocumentID, pageIndex: Int) async throws -> String {
        guard pageIndex >= 0 else { throw DocumentEngineError(.notFound, "page \(pageIndex) of \(id) does not exist") }
        let response = try await request(.GET, path(id, "pages/\(pageIndex)/text"), what: "text of page \(pageIndex) of \(id)")
        let root = try Self.jsonObject(response.body, what: "page text of \(id)")
        let container = (root["data"] as? [String: Any]) ?? root
        guard let lines = container["textLines"] as? [Any] else {
            throw DocumentEngineError(.permanent, "the page text of \(id) has no textLines")
        }
        return lines.map { line in
            if let text = line as? String { return text }
            return ((line as? [String: Any])?["contents"] as? String) ?? ""
        }.joined(separator: "\n")
    }

    // MARK: Layers

    /// The annotations of layer `layer` of document `id` as an Instant JSON document
    /// (`GET /api/documents/{id}/layers/{layer}/document.json`); throws `notFound` when absent.
    public func layerAnnotations(_ id: EngineDocumentID, layer: String) async throws -> InstantJSON {
        let response = try await request(.GET, path(id, "layers/\(Self.pathSegment(layer))/document.json"), what: "layer \(layer) of \(id)")
        do {
            return try InstantJSON(document: response.body)
        } catch {
            throw DocumentEngineError(.permanent, "layer \(layer) of \(id) is not Instant JSON: \(error)")
        }
    }

    // MARK: Requests

    struct Response {
        var status: Int
        var body: Data
        var contentType: String?
    }

    private func path(_ id: EngineDocumentID, _ rest: String?) -> String {
        "/api/documents/\(id.rawValue)" + (rest.map { "/" + $0 } ?? "")
    }

    static func pathSegment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }

    private func annotationList(_ id: EngineDocumentID) async throws -> [InstantJSONAnnotation] {
        let response = try await request(.GET, path(id, "annotations"), accept: "application/x-ndjson", what: "annotations of \(id)")
        var annotations: [InstantJSONAnnotation] = []
        for line in response.body.split(separator: 0x0a) where !line.allSatisfy({ $0 == 0x20 || $0 == 0x0d }) {
            annotations.append(try Self.unwrap(Data(line), what: "an annotation of \(id)"))
        }
        return annotations
    }

    private func comments(_ id: EngineDocumentID, rootID: String) async throws -> [InstantJSONAnnotation] {
        let response = try await request(.GET, path(id, "annotations/\(Self.pathSegment(rootID))/comments"), what: "comments of \(rootID) of \(id)")
        let root = try Self.jsonObject(response.body, what: "comments of \(id)")
        let list = ((root["data"] as? [String: Any])?["comments"] as? [Any]) ?? (root["comments"] as? [Any]) ?? []
        return try list.map { item throws(DocumentEngineError) in try Self.unwrap(item, what: "a comment of \(id)") }
    }

    /// The keys of a comment's `content` in the documented create request (`CommentCreate`).
    static let commentContentKeys = ["text", "creatorName", "createdAt", "updatedAt", "customData"]

    /// An Instant JSON comment as one item of the create-comments request, `{"id":…,"content":{…}}`;
    /// the engine takes the root from the path, so `rootId`, `type` and the rest are not sent.
    ///
    /// The reference (1.9.0) types `content.text` as a string, while an Instant JSON v2 comment carries
    /// `{"format":…,"value":…}`; the text is sent as the comment has it. Whether the engine accepts the
    /// object form there is not confirmed by the documentation.
    static func commentCreate(_ comment: InstantJSONAnnotation) throws(DocumentEngineError) -> String {
        guard let object = try comment.object() as? [String: Any] else {
            throw DocumentEngineError(.invalidAnnotations, "a comment is not a JSON object")
        }
        var item: [String: Any] = ["content": object.filter { commentContentKeys.contains($0.key) }]
        if let commentID = comment.id { item["id"] = commentID }
        return try InstantJSONAnnotation.canonical(item)
    }

    /// A server record `{"id":…,"content":{…}}` as the Instant JSON object with its `id`; a bare
    /// Instant JSON object is taken as it is.
    static func unwrap(_ item: Any, what: String) throws(DocumentEngineError) -> InstantJSONAnnotation {
        var object: Any = item
        if let data = item as? Data {
            do {
                object = try JSONSerialization.jsonObject(with: data, options: [])
            } catch {
                throw DocumentEngineError(.permanent, "\(what) is not JSON: \(error.localizedDescription)")
            }
        }
        guard var record = object as? [String: Any] else { throw DocumentEngineError(.permanent, "\(what) is not a JSON object") }
        if var content = record["content"] as? [String: Any] {
            if content["id"] == nil, let id = record["id"] { content["id"] = id }
            record = content
        }
        return try InstantJSONAnnotation(object: record)
    }

    static func jsonObject(_ data: Data, what: String) throws(DocumentEngineError) -> [String: Any] {
        do {
            guard let object = try JSONSerialization.jsonObject(with: data, options: []) as? [String: Any] else {
                throw DocumentEngineError(.permanent, "\(what) is not a JSON object")
            }
            return object
        } catch let error as DocumentEngineError {
            throw error
        } catch {
            throw DocumentEngineError(.permanent, "\(what) is not JSON: \(error.localizedDescription)")
        }
    }

    /// One API call with retries; a non-2xx answer becomes a ``DocumentEngineError``.
    func request(
        _ method: HTTPMethod, _ path: String, body: Data? = nil, contentType: String? = nil, accept: String = "application/json",
        what: String
    ) async throws -> Response {
        var attempt = 1
        var refreshedToken = false
        while true {
            let token = try await tokens.token()
            var request = HTTPClientRequest(url: settings.baseURL + path)
            request.method = method
            request.headers.add(name: "Authorization", value: "Token token=\"\(token)\"")
            request.headers.add(name: "Accept", value: accept)
            if let body {
                request.headers.add(name: "Content-Type", value: contentType ?? "application/octet-stream")
                request.body = .bytes(ByteBuffer(data: body))
            }
            let failure: DocumentEngineError
            do {
                let response = try await client.execute(request, timeout: Self.timeAmount(settings.requestTimeout), logger: logger)
                let status = Int(response.status.code)
                let data = Data(buffer: try await response.body.collect(upTo: settings.maxResponseBytes))
                switch status {
                case 200..<300:
                    return Response(status: status, body: data, contentType: response.headers.first(name: "Content-Type"))
                case 404:
                    throw DocumentEngineError(.notFound, "\(what): 404 \(Self.excerpt(data))")
                case 401 where !refreshedToken:
                    await tokens.invalidate(token)
                    refreshedToken = true
                    continue
                case 408, 429, 500...599:
                    failure = DocumentEngineError(.transient, "\(what): HTTP \(status) \(Self.excerpt(data))")
                default:
                    throw DocumentEngineError(.permanent, "\(what): HTTP \(status) \(Self.excerpt(data))")
                }
            } catch let error as DocumentEngineError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                failure = DocumentEngineError(.transient, "\(what): \(error)")
            }
            guard attempt < max(1, settings.maxAttempts) else { throw failure }
            let ceiling = min(settings.retryCap, settings.retryBase * (1 << min(attempt - 1, 16)))
            let nanos = max(Int64(1), ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000)
            logger.debug("document engine request failed; retrying", metadata: ["attempt": "\(attempt)", "error": "\(failure)"])
            try await Task.sleep(for: .nanoseconds(Int64.random(in: 0...nanos)))
            attempt += 1
        }
    }

    private static func excerpt(_ data: Data) -> String {
        String(decoding: data.prefix(300), as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// A `multipart/form-data` body.
struct MultipartForm {
    let boundary = "exchanger-" + UUID().uuidString
    private(set) var body = Data()
    var contentType: String { "multipart/form-data; boundary=\(boundary)" }

    mutating func field(_ name: String, _ value: String) {
        body.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8))
    }

    mutating func file(_ name: String, filename: String?, contentType: String, _ data: Data) {
        let file = filename.map { "; filename=\"\($0)\"" } ?? ""
        body.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\(file)\r\nContent-Type: \(contentType)\r\n\r\n".utf8))
        body.append(data)
        body.append(Data("\r\n".utf8))
    }

    /// The body with its closing boundary.
    var closed: Data { body + Data("--\(boundary)--\r\n".utf8) }
}
