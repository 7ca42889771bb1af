import DocumentEngine
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ObjectStorage
import NIOCore
import ServiceLifecycle

/// A Nutrient Document Engine stand-in on 127.0.0.1 (a free port), speaking the wire format the
/// client uses: `Authorization: Token token="…"` checked on every request (401 otherwise),
/// multipart upload, `document_info`, `pdf`, NDJSON annotation listing (the JSON form stops at
/// 1,000 with `truncated`, as documented), attachments, comments (the documented `CommentCreate` /
/// `CommentsList` shapes), page text, `/api/build` (with `applyRedactions` removing what the
/// redactions cover), and injected faults.
public final class FakeNutrientServer: Sendable {
    public static let token = "fake-nutrient-token"

    public struct Document: Sendable {
        public var pdf: Data
        /// (id, Instant JSON content without the id), in upload order.
        public var annotations: [(id: String, content: [String: any Sendable])]
        public var attachments: [String: (contentType: String, data: Data)]
        public var comments: [String: [String]] = [:]
        public var pageTexts: [Int: [String]] = [:]
        /// Instant JSON documents of named layers.
        public var layers: [String: Data] = [:]
    }

    public struct RequestRecord: Sendable {
        public var method: String
        public var path: String
        public var authorization: String?
        public var accept: String?
    }

    public actor State {
        public var documents: [String: Document] = [:]
        public var requests: [RequestRecord] = []
        /// Statuses returned (instead of the real answer) to the next requests, in order.
        public var faults: [Int] = []
        /// The build instructions received, as sorted-key JSON.
        public var builds: [String] = []

        func record(_ request: RequestRecord) -> Int? {
            requests.append(request)
            return faults.isEmpty ? nil : faults.removeFirst()
        }
        public func inject(_ statuses: [Int]) { faults.append(contentsOf: statuses) }
        public func put(_ id: String, _ document: Document) { documents[id] = document }
        public func document(_ id: String) -> Document? { documents[id] }
        public func update(_ id: String, _ body: (inout Document) -> Void) -> Bool {
            guard var document = documents[id] else { return false }
            body(&document)
            documents[id] = document
            return true
        }
        public func remove(_ id: String) -> Bool { documents.removeValue(forKey: id) != nil }
        func recordBuild(_ instructions: String) { builds.append(instructions) }
        public func lastBuild() -> String? { builds.last }
    }

    /// The server's documents, requests, faults and builds.
    public let state: State
    public let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    public var baseURL: String { "http://127.0.0.1:\(port)" }

    private init(port: Int, group: ServiceGroup, task: Task<Void, any Error>, state: State) {
        self.port = port
        self.group = group
        self.task = task
        self.state = state
    }

    public static func start() async throws -> FakeNutrientServer {
        let state = State()
        let router = Router()
        routes(router, state)
        let logger = Logger(label: "fake-nutrient")
        let (ports, continuation) = AsyncThrowingStream<Int, any Error>.makeStream()
        let application = Application(
            router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0), serverName: "fake-nutrient"),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [application], logger: logger))
        let task = Task {
            do {
                try await group.run()
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
                throw error
            }
        }
        for try await port in ports {
            return FakeNutrientServer(port: port, group: group, task: task, state: state)
        }
        throw FakeServerError(message: "the fake Nutrient server did not start")
    }

    public func shutdown() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    // MARK: Routes

    private static func routes(_ router: Router<BasicRequestContext>, _ state: State) {
        router.post("/api/documents") { request, context in
            try await guarded(request, state) { body in
                let form = try Multipart.parse(body, contentType: request.headers[.contentType] ?? "")
                guard let id = form["document_id"].map({ String(decoding: $0.data, as: UTF8.self) }), let pdf = form["file"]?.data else {
                    return json(.badRequest, ["error": "document_id and file are required"])
                }
                if await state.document(id) != nil, form["overwrite_existing_document"].map({ String(decoding: $0.data, as: UTF8.self) }) != "true" {
                    return json(.conflict, ["error": "document exists"])
                }
                var document = Document(pdf: pdf, annotations: [], attachments: [:])
                if let instant = form["attachment"]?.data {
                    guard let root = try? JSONSerialization.jsonObject(with: instant) as? [String: Any] else {
                        return json(.badRequest, ["error": "attachment is not Instant JSON"])
                    }
                    for (index, item) in ((root["annotations"] as? [[String: Any]]) ?? []).enumerated() {
                        var content = item
                        let annotationID = (content.removeValue(forKey: "id") as? String) ?? "generated-\(index)"
                        document.annotations.append((annotationID, sendable(content)))
                    }
                    for (key, value) in (root["attachments"] as? [String: [String: String]]) ?? [:] {
                        document.attachments[key] = (value["contentType"] ?? "application/octet-stream", Data(base64Encoded: value["binary"] ?? "") ?? Data())
                    }
                }
                await state.put(id, document)
                return json(.ok, ["data": ["document_id": id]])
            }
        }
        router.get("/api/documents/:id/document_info") { request, context in
            try await guarded(request, state) { _ in
                guard let document = await state.document(context.parameters.get("id") ?? "") else { return json(.notFound, ["error": "no document"]) }
                let pages = max(1, String(decoding: document.pdf, as: UTF8.self).components(separatedBy: "/Type /Page ").count - 1)
                return json(.ok, ["data": ["pageCount": pages, "documentId": context.parameters.get("id") ?? ""]])
            }
        }
        router.get("/api/documents/:id/pdf") { request, context in
            try await guarded(request, state) { _ in
                guard let document = await state.document(context.parameters.get("id") ?? "") else { return json(.notFound, ["error": "no document"]) }
                return bytes(document.pdf, "application/pdf")
            }
        }
        router.delete("/api/documents/:id") { request, context in
            try await guarded(request, state) { _ in
                await state.remove(context.parameters.get("id") ?? "") ? json(.ok, ["data": [:] as [String: String]]) : json(.notFound, ["error": "no document"])
            }
        }
        router.get("/api/documents/:id/annotations") { request, context in
            try await guarded(request, state) { _ in
                guard let document = await state.document(context.parameters.get("id") ?? "") else { return json(.notFound, ["error": "no document"]) }
                let records: [[String: Any]] = document.annotations.map { ["id": $0.id, "content": $0.content, "createdBy": "fake"] }
                if request.headers[.accept] == "application/x-ndjson" {
                    let lines = records.compactMap { try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
                    var data = Data()
                    for line in lines { data.append(line); data.append(0x0a) }
                    return bytes(data, "application/x-ndjson")
                }
                // The JSON form stops at 1,000 and says so with `truncated`, as documented.
                return json(.ok, ["data": ["annotations": Array(records.prefix(1000)), "truncated": records.count > 1000] as [String: Any]])
            }
        }
        router.get("/api/documents/:id/attachments/:attachment") { request, context in
            try await guarded(request, state) { _ in
                guard let document = await state.document(context.parameters.get("id") ?? ""),
                      let attachment = document.attachments[context.parameters.get("attachment") ?? ""]
                else { return json(.notFound, ["error": "no attachment"]) }
                return bytes(attachment.data, attachment.contentType)
            }
        }
        router.get("/api/documents/:id/annotations/:root/comments") { request, context in
            try await guarded(request, state) { _ in
                guard let document = await state.document(context.parameters.get("id") ?? "") else { return json(.notFound, ["error": "no document"]) }
                let root = context.parameters.get("root") ?? ""
                guard document.annotations.contains(where: { $0.id == root }) else { return json(.notFound, ["error": "no root"]) }
                let comments: [Any] = (document.comments[root] ?? []).compactMap { text in
                    guard var object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { return nil }
                    let id = object.removeValue(forKey: "id") ?? ""
                    return ["id": id, "content": object, "createdBy": "fake", "updatedBy": "fake"]
                }
                return json(.ok, ["data": ["comments": comments]])
            }
        }
        router.post("/api/documents/:id/annotations/:root/comments") { request, context in
            try await guarded(request, state) { body in
                // The documented request: {"comments":[{"id"?,"content":{"text",…}}]}; the engine stores the
                // comment as Instant JSON under the root of the path and answers the ids.
                guard let root = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let comments = root["comments"] as? [[String: Any]],
                      comments.allSatisfy({ ($0["content"] as? [String: Any])?.keys.contains("text") == true })
                else {
                    return json(.badRequest, ["error": "{\"comments\":[{\"content\":{\"text\":…}}]} expected"])
                }
                let rootID = context.parameters.get("root") ?? ""
                guard let document = await state.document(context.parameters.get("id") ?? "") else { return json(.notFound, ["error": "no document"]) }
                guard document.annotations.contains(where: { $0.id == rootID }) else { return json(.notFound, ["error": "no root"]) }
                var ids: [String] = []
                var texts: [String] = []
                for (index, comment) in comments.enumerated() {
                    let commentID = (comment["id"] as? String) ?? "generated-comment-\(document.comments[rootID, default: []].count + index)"
                    var record = (comment["content"] as? [String: Any]) ?? [:]
                    record["id"] = commentID
                    record["rootId"] = rootID
                    record["type"] = "pspdfkit/comment"
                    guard let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) else { continue }
                    ids.append(commentID)
                    texts.append(String(decoding: data, as: UTF8.self))
                }
                let found = await state.update(context.parameters.get("id") ?? "") { document in document.comments[rootID, default: []].append(contentsOf: texts) }
                return found ? json(.ok, ["data": ["comments": ids.map { ["id": $0] }]]) : json(.notFound, ["error": "no document"])
            }
        }
        router.get("/api/documents/:id/layers/:layer/document.json") { request, context in
            try await guarded(request, state) { _ in
                guard let document = await state.document(context.parameters.get("id") ?? ""),
                      let layer = document.layers[context.parameters.get("layer") ?? ""]
                else { return json(.notFound, ["error": "no layer"]) }
                return bytes(layer, "application/json")
            }
        }
        router.get("/api/documents/:id/pages/:page/text") { request, context in
            try await guarded(request, state) { _ in
                guard let document = await state.document(context.parameters.get("id") ?? ""), let page = Int(context.parameters.get("page") ?? "")
                else { return json(.notFound, ["error": "no page"]) }
                // Text a test set, else the PDF's own text (as the engine extracts it).
                let extracted = document.pageTexts[page]
                    ?? (try? PDFTextExtractor().pageTexts(of: document.pdf)).flatMap { texts in
                        texts.indices.contains(page) ? texts[page].split(separator: "\n", omittingEmptySubsequences: false).map(String.init) : nil
                    }
                guard let lines = extracted else { return json(.notFound, ["error": "no page"]) }
                return json(.ok, ["textLines": lines.map { ["contents": $0, "left": 0, "top": 0] as [String: Any] }])
            }
        }
        router.post("/api/build") { request, context in
            try await guarded(request, state) { body in
                let form = try Multipart.parse(body, contentType: request.headers[.contentType] ?? "")
                guard let instructionsData = form["instructions"]?.data,
                      let instructions = try? JSONSerialization.jsonObject(with: instructionsData) as? [String: Any],
                      let parts = instructions["parts"] as? [[String: Any]], let file = parts.first?["file"] as? String, let pdf = form[file]?.data
                else { return json(.badRequest, ["error": "instructions with a file part are required"]) }
                let canonical = (try? JSONSerialization.data(withJSONObject: instructions, options: [.sortedKeys, .withoutEscapingSlashes]))
                    .map { String(decoding: $0, as: UTF8.self) } ?? ""
                await state.recordBuild(canonical)
                let actions = ((instructions["actions"] as? [[String: Any]]) ?? []).compactMap { $0["type"] as? String }
                var applied: [String] = []
                var redactions: [InstantJSONAnnotation] = []
                for action in ((instructions["actions"] as? [[String: Any]]) ?? []) where action["type"] as? String == "applyInstantJson" {
                    guard let part = action["file"] as? String, let instant = form[part]?.data,
                          let root = try? JSONSerialization.jsonObject(with: instant) as? [String: Any]
                    else { return json(.badRequest, ["error": "applyInstantJson names no Instant JSON part"]) }
                    let listed = (root["annotations"] as? [[String: Any]]) ?? []
                    applied += listed.compactMap { $0["id"] as? String }
                    for annotation in listed where annotation["type"] as? String == "pspdfkit/markup/redaction" {
                        let data = try JSONSerialization.data(withJSONObject: annotation, options: [.sortedKeys])
                        redactions.append(try InstantJSONAnnotation(json: String(decoding: data, as: UTF8.self)))
                    }
                }
                var output = pdf
                // applyRedactions removes what the redaction annotations cover, as the engine does
                // (the local engine's true redaction stands in for it); without that action they
                // would only be drawn by flatten, and the covered content would stay.
                if actions.contains("applyRedactions"), !redactions.isEmpty {
                    output = try await Self.applyRedactions(pdf, redactions)
                }
                output.append(Data("\n%fake-build actions=\(actions.joined(separator: ",")) annotations=\(applied.joined(separator: ","))\n".utf8))
                return bytes(output, "application/pdf")
            }
        }
    }

    /// `pdf` with `redactions` applied: the covered content removed, the areas filled, the overlay text drawn.
    static func applyRedactions(_ pdf: Data, _ redactions: [InstantJSONAnnotation]) async throws -> Data {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fake-nutrient-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = FileObjectStore(directory: directory.path)
        let engine = try LocalDocumentEngine(store: store)
        let redacted = try await engine.buildFlattened(pdf: pdf, annotations: try InstantJSON(annotations: redactions))
        try await store.shutdown()
        return redacted
    }

    /// Records the request, answers an injected fault or a 401 for a wrong token, else runs `body`.
    private static func guarded(_ request: Request, _ state: State, _ body: (Data) async throws -> Response) async throws -> Response {
        let authorization = request.headers[.authorization]
        let fault = await state.record(RequestRecord(
            method: request.method.rawValue, path: request.uri.path, authorization: authorization, accept: request.headers[.accept]))
        let data = Data(buffer: try await request.body.collect(upTo: 64 << 20))
        if let fault { return json(HTTPResponse.Status(code: fault), ["error": "injected \(fault)"]) }
        guard authorization == "Token token=\"\(token)\"" else { return json(.unauthorized, ["error": "bad token"]) }
        return try await body(data)
    }

    private static func json(_ status: HTTPResponse.Status, _ value: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    private static func bytes(_ data: Data, _ contentType: String) -> Response {
        Response(status: .ok, headers: [.contentType: contentType], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    private static func sendable(_ object: [String: Any]) -> [String: any Sendable] {
        // JSON values round-tripped through JSONSerialization are plain Foundation values.
        (try? JSONSerialization.data(withJSONObject: object)).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: any Sendable] } ?? [:]
    }
}

public struct FakeServerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// A minimal `multipart/form-data` parser for the fake server.
enum Multipart {
    struct Part {
        var name: String
        var contentType: String?
        var data: Data
    }

    static func parse(_ body: Data, contentType: String) throws -> [String: Part] {
        guard let range = contentType.range(of: "boundary=") else { throw FakeServerError(message: "no multipart boundary") }
        let boundary = Data(("--" + contentType[range.upperBound...].trimmingCharacters(in: CharacterSet(charactersIn: "\" "))).utf8)
        var parts: [String: Part] = [:]
        var cursor = body.startIndex
        while let start = body.range(of: boundary, in: cursor..<body.endIndex) {
            let afterBoundary = start.upperBound
            guard body.count >= 2, afterBoundary + 2 <= body.endIndex, body[afterBoundary..<(afterBoundary + 2)] != Data("--".utf8) else { break }
            let headerStart = afterBoundary + 2  // CRLF
            guard let headerEnd = body.range(of: Data("\r\n\r\n".utf8), in: headerStart..<body.endIndex),
                  let next = body.range(of: Data("\r\n".utf8) + boundary, in: headerEnd.upperBound..<body.endIndex)
            else { break }
            let headers = String(decoding: body[headerStart..<headerEnd.lowerBound], as: UTF8.self)
            var name = ""
            var type: String?
            for line in headers.components(separatedBy: "\r\n") {
                let lower = line.lowercased()
                if lower.hasPrefix("content-disposition:"), let nameRange = line.range(of: "name=\"") {
                    name = String(line[nameRange.upperBound...].prefix { $0 != "\"" })
                } else if lower.hasPrefix("content-type:") {
                    type = line.dropFirst("content-type:".count).trimmingCharacters(in: .whitespaces)
                }
            }
            parts[name] = Part(name: name, contentType: type, data: Data(body[headerEnd.upperBound..<next.lowerBound]))
            cursor = next.lowerBound + 2
        }
        return parts
    }
}
