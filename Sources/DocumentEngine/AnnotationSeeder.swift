import Foundation

/// Realistic annotations of all seven exchanged kinds, for demos and tests: a redaction, a
/// highlight, a note, a sticker (`pspdfkit/image` with a PNG attachment), a bates stamp, a
/// confidentiality stamp (`pspdfkit/text` with `customData.stampType`) and a comment-thread root
/// with a two-comment thread.
public enum AnnotationSeeder {
    /// The annotations (ids prefixed `seed-{documentId}-`) and the document's comment thread.
    public static func annotations(documentID: Int64, batesNumber: String, pageCount: Int = 1) throws(DocumentEngineError) -> (InstantJSON, [CommentThread]) {
        let prefix = "seed-\(documentID)"
        let last = max(0, pageCount - 1)
        let image = stickerPNG()
        let imageID = "sticker-" + SHA256Hasher.hex(image).prefix(16)
        let list = [
            #"{"id":"\#(prefix)-redaction","type":"pspdfkit/markup/redaction","pageIndex":0,"bbox":[72,56,240,22],"overlayText":"PRIVILEGED","v":2}"#,
            #"{"id":"\#(prefix)-highlight","type":"pspdfkit/markup/highlight","pageIndex":0,"bbox":[72,120,200,16],"rects":[[72,120,200,16]],"v":2}"#,
            #"{"id":"\#(prefix)-note","type":"pspdfkit/note","pageIndex":\#(last),"bbox":[500,100,32,32],"text":{"format":"plain","value":"Check with custodian"},"v":2}"#,
            #"{"id":"\#(prefix)-sticker","type":"pspdfkit/image","pageIndex":\#(last),"bbox":[480,600,48,36],"imageAttachmentId":"\#(imageID)","contentType":"image/png","v":2}"#,
            #"{"id":"\#(prefix)-bates","type":"pspdfkit/text","pageIndex":0,"bbox":[440,770,150,14],"text":{"format":"plain","value":"\#(batesNumber)"},"customData":{"stampType":"bates_stamp"},"v":2}"#,
            #"{"id":"\#(prefix)-confidentiality","type":"pspdfkit/text","pageIndex":0,"bbox":[40,770,180,14],"text":{"format":"plain","value":"CONFIDENTIAL"},"customData":{"stampType":"confidentiality_stamp"},"v":2}"#,
            #"{"id":"\#(prefix)-comment","type":"pspdfkit/markup/highlight","pageIndex":0,"bbox":[72,160,180,16],"rects":[[72,160,180,16]],"isCommentThreadRoot":true,"v":2}"#,
        ]
        let annotations = try list.map { text throws(DocumentEngineError) in try InstantJSONAnnotation(json: text) }
        let thread = CommentThread(rootID: "\(prefix)-comment", comments: [
            try InstantJSONAnnotation(json: #"{"id":"\#(prefix)-c1","rootId":"\#(prefix)-comment","text":{"format":"plain","value":"Is this responsive?"},"creatorName":"reviewer1","createdAt":"2024-01-02T10:00:00Z"}"#),
            try InstantJSONAnnotation(json: #"{"id":"\#(prefix)-c2","rootId":"\#(prefix)-comment","text":{"format":"plain","value":"Yes, tag it."},"creatorName":"reviewer2","createdAt":"2024-01-02T11:30:00Z"}"#),
        ])
        let json = try InstantJSON(annotations: annotations, attachments: [try InstantJSONAttachment(id: imageID, contentType: "image/png", data: image)])
        return (json, [thread])
    }

    /// Ingests `pdf` as `id` into `engine` with ``annotations(documentID:batesNumber:pageCount:)`` and its thread.
    public static func seed(_ engine: any DocumentEngine, id: EngineDocumentID, pdf: PDFSource, batesNumber: String, pageCount: Int = 1) async throws {
        let (annotations, threads) = try annotations(documentID: id.documentID, batesNumber: batesNumber, pageCount: pageCount)
        try await engine.ingest(id, pdf: pdf, annotations: annotations)
        try await engine.putCommentThreads(id, threads)
    }

    /// A 6 × 4 red RGB PNG (stored zlib blocks, real CRCs): a sticker every engine can draw.
    static func stickerPNG() -> Data {
        let width = 6, height = 4
        func crc32(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
            }
            return ~crc
        }
        func be32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8((value >> 16) & 0xff), UInt8((value >> 8) & 0xff), UInt8(value & 0xff)] }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be32(UInt32(data.count)) + body + be32(crc32(body))
        }
        var raw: [UInt8] = []
        for _ in 0..<height {
            raw.append(0)
            for _ in 0..<width { raw += [210, 40, 40] }
        }
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in raw {
            a = (a + UInt32(byte)) % 65521
            b = (b + a) % 65521
        }
        let length = UInt16(raw.count)
        let zlib: [UInt8] = [0x78, 0x01, 0x01, UInt8(length & 0xff), UInt8(length >> 8), UInt8(~length & 0xff), UInt8(~length >> 8)] + raw + be32(b << 16 | a)
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
            + chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [8, 2, 0, 0, 0]) + chunk("IDAT", zlib) + chunk("IEND", [])
        return Data(png)
    }
}
