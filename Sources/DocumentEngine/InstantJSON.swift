import Foundation

/// One annotation in Nutrient's Instant JSON form (`{"type":"pspdfkit/markup/redaction",…}`),
/// kept as its canonical JSON text: one line, keys sorted, so equal annotations are equal bytes
/// and a set of them is a stable NDJSON file.
public struct InstantJSONAnnotation: Sendable, Hashable, CustomStringConvertible {
    /// The canonical JSON object, on one line.
    public let json: String
    /// The annotation's `type` (`pspdfkit/ink`, `pspdfkit/markup/redaction`, `pspdfkit/image`, …), when present.
    public let type: String?
    /// The annotation's `id` (or, failing that, its `name`), when present.
    public let id: String?

    /// Parses one annotation; throws ``DocumentEngineError/Code/invalidAnnotations`` unless `json` is a JSON object.
    public init(json: String) throws(DocumentEngineError) {
        try self.init(data: Data(json.utf8))
    }

    /// Parses one annotation from UTF-8 JSON; throws ``DocumentEngineError/Code/invalidAnnotations`` unless it is a JSON object.
    public init(data: Data) throws(DocumentEngineError) {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw DocumentEngineError(.invalidAnnotations, "an annotation is not JSON: \(error.localizedDescription)")
        }
        try self.init(object: object)
    }

    init(object: Any) throws(DocumentEngineError) {
        guard let dictionary = object as? [String: Any] else {
            throw DocumentEngineError(.invalidAnnotations, "an annotation is not a JSON object")
        }
        self.json = try Self.canonical(dictionary)
        self.type = dictionary["type"] as? String
        self.id = (dictionary["id"] as? String) ?? (dictionary["name"] as? String)
    }

    public var description: String { json }

    /// The annotation as a Foundation JSON object (a `[String: Any]`).
    public func object() throws(DocumentEngineError) -> Any {
        do {
            return try JSONSerialization.jsonObject(with: Data(json.utf8), options: [])
        } catch {
            throw DocumentEngineError(.invalidAnnotations, "an annotation is not JSON: \(error.localizedDescription)")
        }
    }

    static func canonical(_ object: Any) throws(DocumentEngineError) -> String {
        guard JSONSerialization.isValidJSONObject(object) else {
            throw DocumentEngineError(.invalidAnnotations, "an annotation holds values JSON cannot express")
        }
        do {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            // JSONSerialization escapes control characters, so the text is one line.
            return String(decoding: data, as: UTF8.self)
        } catch {
            throw DocumentEngineError(.invalidAnnotations, "an annotation cannot be written as JSON: \(error.localizedDescription)")
        }
    }
}

/// A binary an annotation refers to (a sticker's image): Instant JSON's
/// `"attachments": {"<id>": {"binary": "<base64>", "contentType": "image/png"}}`.
public struct InstantJSONAttachment: Sendable, Hashable {
    /// The attachment id annotations refer to (Nutrient uses the SHA-256 of the content): 1…200 of
    /// `A-Z a-z 0-9 . _ -`, not `.` or `..`.
    public let id: String
    public let contentType: String
    public let data: Data

    /// Throws ``DocumentEngineError/Code/invalidAnnotations`` for an id outside the allowed form or an empty content type.
    public init(id: String, contentType: String, data: Data) throws(DocumentEngineError) {
        let allowed = id.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte) || byte == 0x2e || byte == 0x5f || byte == 0x2d
        }
        guard !id.isEmpty, id.utf8.count <= 200, allowed, id != ".", id != ".." else {
            throw DocumentEngineError(.invalidAnnotations, "attachment id '\(id.prefix(80))' is not 1…200 of A-Z a-z 0-9 . _ -")
        }
        guard !contentType.isEmpty, !contentType.contains(where: { $0.isNewline }) else {
            throw DocumentEngineError(.invalidAnnotations, "attachment \(id) has no content type")
        }
        self.id = id
        self.contentType = contentType
        self.data = data
    }
}

/// A document's annotations in Instant JSON: the annotations and the attachments they use.
///
/// Two forms are read and written:
/// - the Instant JSON document Nutrient's `/api/build` `applyInstantJson` takes,
///   `{"format":"https://pspdfkit.com/instant-json/v1","annotations":[…],"attachments":{…}}`
///   (``init(document:)`` / ``documentData()``), which is how the pre-uploader hands layer
///   annotations to the uploader (``DocumentEngineKeys/layerAnnotations(caseID:batchID:documentID:)``);
/// - NDJSON, one annotation per line (``init(ndjson:)`` / ``ndjsonData()``), as Nutrient streams
///   annotations (`application/x-ndjson`) and as the local engine stores them.
public struct InstantJSON: Sendable, Hashable {
    /// The `format` of Instant JSON documents this build writes.
    public static let format = "https://pspdfkit.com/instant-json/v1"
    /// No annotations, no attachments.
    public static let empty = InstantJSON()

    public private(set) var annotations: [InstantJSONAnnotation]
    /// By id, in id order.
    public private(set) var attachments: [InstantJSONAttachment]

    private init() {
        annotations = []
        attachments = []
    }

    /// Throws ``DocumentEngineError/Code/invalidAnnotations`` when two attachments share an id.
    public init(annotations: [InstantJSONAnnotation], attachments: [InstantJSONAttachment] = []) throws(DocumentEngineError) {
        var seen = Set<String>()
        for attachment in attachments where !seen.insert(attachment.id).inserted {
            throw DocumentEngineError(.invalidAnnotations, "attachment id \(attachment.id) appears twice")
        }
        self.annotations = annotations
        self.attachments = attachments.sorted { $0.id < $1.id }
    }

    public var isEmpty: Bool { annotations.isEmpty && attachments.isEmpty }

    /// Parses an Instant JSON document (`format` optional, but when present it must be Instant JSON;
    /// `annotations` and `attachments` optional).
    public init(document data: Data) throws(DocumentEngineError) {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw DocumentEngineError(.invalidAnnotations, "not an Instant JSON document: \(error.localizedDescription)")
        }
        guard let root = parsed as? [String: Any] else {
            throw DocumentEngineError(.invalidAnnotations, "an Instant JSON document is a JSON object")
        }
        if let format = root["format"] {
            guard let format = format as? String, format.hasPrefix("https://pspdfkit.com/instant-json/") else {
                throw DocumentEngineError(.invalidAnnotations, "format '\(root["format"].map { "\($0)" } ?? "")' is not Instant JSON")
            }
        }
        var annotations: [InstantJSONAnnotation] = []
        if let list = root["annotations"] {
            guard let list = list as? [Any] else { throw DocumentEngineError(.invalidAnnotations, "annotations is not an array") }
            for item in list { annotations.append(try InstantJSONAnnotation(object: item)) }
        }
        var attachments: [InstantJSONAttachment] = []
        if let map = root["attachments"] {
            guard let map = map as? [String: Any] else { throw DocumentEngineError(.invalidAnnotations, "attachments is not an object") }
            for (id, value) in map {
                guard let entry = value as? [String: Any], let binary = entry["binary"] as? String,
                      let contentType = entry["contentType"] as? String
                else {
                    throw DocumentEngineError(.invalidAnnotations, "attachment \(id.prefix(80)) needs binary and contentType strings")
                }
                guard let bytes = Data(base64Encoded: binary) else {
                    throw DocumentEngineError(.invalidAnnotations, "attachment \(id.prefix(80)) is not base64")
                }
                attachments.append(try InstantJSONAttachment(id: id, contentType: contentType, data: bytes))
            }
        }
        try self.init(annotations: annotations, attachments: attachments)
    }

    /// The Instant JSON document (keys sorted, deterministic).
    public func documentData() throws(DocumentEngineError) -> Data {
        var entries: [String: Any] = [:]
        for attachment in attachments {
            entries[attachment.id] = ["binary": attachment.data.base64EncodedString(), "contentType": attachment.contentType]
        }
        let attachmentsJSON = try InstantJSONAnnotation.canonical(entries)
        let formatJSON = try InstantJSONAnnotation.canonical([Self.format])
        var text = "{\"annotations\":[" + annotations.map(\.json).joined(separator: ",") + "],"
        text += "\"attachments\":" + attachmentsJSON + ","
        text += "\"format\":" + String(formatJSON.dropFirst().dropLast()) + "}"
        return Data(text.utf8)
    }

    /// Parses NDJSON, one annotation object per line (blank lines ignored); no attachments.
    public init(ndjson data: Data) throws(DocumentEngineError) {
        var annotations: [InstantJSONAnnotation] = []
        for line in data.split(separator: 0x0a, omittingEmptySubsequences: true) {
            let trimmed = line.last == 0x0d ? line.dropLast() : line
            guard !trimmed.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) else { continue }
            annotations.append(try InstantJSONAnnotation(data: Data(trimmed)))
        }
        try self.init(annotations: annotations)
    }

    /// The annotations as NDJSON: one canonical object per line, each line ending in `\n`.
    public func ndjsonData() -> Data {
        Data(annotations.map { $0.json + "\n" }.joined().utf8)
    }
}
