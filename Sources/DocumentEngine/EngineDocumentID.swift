/// A document's id in the document engine, in the vendor's form
/// `document_{caseId}_{batchId}_{documentId}_{exhibitId}` (as the Nutrient uploader names them).
///
/// A document without an exhibit has exhibit `0` in its id (`document_42_7_1001_0`), and an id
/// ending in `_0` parses back to ``exhibitID`` `nil`. Case, batch and document ids are positive;
/// every number is written in decimal without sign or leading zeros, so each document has exactly
/// one id and the id is a safe object-key segment and URL path component.
public struct EngineDocumentID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible, LosslessStringConvertible {
    /// The exhibit number written for a document without an exhibit.
    public static let noExhibit: Int64 = 0

    public let caseID: Int64
    public let batchID: Int64
    public let documentID: Int64
    /// The exhibit, or nil (written as `0`).
    public let exhibitID: Int64?

    /// Builds an id; throws ``DocumentEngineError/Code/invalidDocumentID`` for a non-positive case,
    /// batch or document id or a negative exhibit. An exhibit of `0` is the same as none.
    public init(caseID: Int64, batchID: Int64, documentID: Int64, exhibitID: Int64?) throws(DocumentEngineError) {
        for (name, value) in [("caseId", caseID), ("batchId", batchID), ("documentId", documentID)] where value <= 0 {
            throw DocumentEngineError(.invalidDocumentID, "\(name) must be a positive id, not \(value)")
        }
        if let exhibitID, exhibitID < 0 {
            throw DocumentEngineError(.invalidDocumentID, "exhibitId must not be negative, not \(exhibitID)")
        }
        self.caseID = caseID
        self.batchID = batchID
        self.documentID = documentID
        self.exhibitID = exhibitID == Self.noExhibit ? nil : exhibitID
    }

    /// Parses `document_{caseId}_{batchId}_{documentId}_{exhibitId}`; throws
    /// ``DocumentEngineError/Code/invalidDocumentID`` for anything else (other prefixes, missing or
    /// extra parts, signs, leading zeros, numbers out of range).
    public init(parsing text: String) throws(DocumentEngineError) {
        let parts = text.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "document" else {
            throw DocumentEngineError(.invalidDocumentID, "'\(text.prefix(200))' is not document_{caseId}_{batchId}_{documentId}_{exhibitId}")
        }
        var numbers: [Int64] = []
        for part in parts.dropFirst() {
            guard !part.isEmpty, part.utf8.allSatisfy({ (0x30...0x39).contains($0) }), part == "0" || part.first != "0",
                  let number = Int64(part)
            else {
                throw DocumentEngineError(.invalidDocumentID, "'\(text.prefix(200))' has '\(part.prefix(40))' where a decimal id belongs")
            }
            numbers.append(number)
        }
        try self.init(caseID: numbers[0], batchID: numbers[1], documentID: numbers[2], exhibitID: numbers[3])
    }

    /// `LosslessStringConvertible`: nil for anything ``init(parsing:)`` rejects.
    public init?(_ description: String) {
        guard let id = try? EngineDocumentID(parsing: description) else { return nil }
        self = id
    }

    /// `document_{caseId}_{batchId}_{documentId}_{exhibitId}`.
    public var rawValue: String { "document_\(caseID)_\(batchID)_\(documentID)_\(exhibitID ?? Self.noExhibit)" }
    public var description: String { rawValue }

    public static func < (lhs: EngineDocumentID, rhs: EngineDocumentID) -> Bool {
        (lhs.caseID, lhs.batchID, lhs.documentID, lhs.exhibitID ?? noExhibit)
            < (rhs.caseID, rhs.batchID, rhs.documentID, rhs.exhibitID ?? noExhibit)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
