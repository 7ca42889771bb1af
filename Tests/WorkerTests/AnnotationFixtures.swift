import DocumentEngine
import Foundation

/// A valid PDF of `pages` Letter pages, page `n` showing `"\(title) page n"`.
func realPDF(_ title: String, pages: Int = 2) -> Data {
    var objects = ["<< /Type /Catalog /Pages 2 0 R >>"]
    let kids = (0..<pages).map { "\(4 + 2 * $0) 0 R" }.joined(separator: " ")
    objects.append("<< /Type /Pages /Kids [\(kids)] /Count \(pages) >>")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for page in 0..<pages {
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents \(5 + 2 * page) 0 R /Resources << /Font << /F1 3 0 R >> >> >>")
        let content = "BT /F1 14 Tf 72 720 Td (\(title) page \(page + 1)) Tj ET"
        objects.append("<< /Length \(content.utf8.count) >>\nstream\n\(content)\nendstream")
    }
    var output = "%PDF-1.4\n"
    var offsets: [Int] = []
    for (index, body) in objects.enumerated() {
        offsets.append(output.utf8.count)
        output += "\(index + 1) 0 obj\n\(body)\nendobj\n"
    }
    let xref = output.utf8.count
    output += "xref\n0 \(objects.count + 1)\n0000000000 65535 f \n"
    for offset in offsets { output += String(format: "%010d 00000 n \n", offset) }
    output += "trailer\n<< /Size \(objects.count + 1) /Root 1 0 R >>\nstartxref\n\(xref)\n%%EOF\n"
    return Data(output.utf8)
}

/// A real 8-bit RGB PNG of `width` × `height` in one colour (zlib with stored blocks, CRCs right).
func solidPNG(width: Int = 4, height: Int = 3, rgb: (UInt8, UInt8, UInt8) = (200, 30, 30)) -> Data {
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
        raw.append(0)  // filter: none
        for _ in 0..<width { raw += [rgb.0, rgb.1, rgb.2] }
    }
    var a: UInt32 = 1, b: UInt32 = 0
    for byte in raw {
        a = (a + UInt32(byte)) % 65521
        b = (b + a) % 65521
    }
    let length = UInt16(raw.count)
    let zlib: [UInt8] = [0x78, 0x01, 0x01, UInt8(length & 0xff), UInt8(length >> 8), UInt8(~length & 0xff), UInt8(~length >> 8)] + raw + be32(b << 16 | a)
    let header = be32(UInt32(width)) + be32(UInt32(height)) + [8, 2, 0, 0, 0]
    let png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", header) + chunk("IDAT", zlib) + chunk("IEND", [])
    return Data(png)
}

/// One annotation of each of the seven exchanged kinds (the comment root is a highlight with
/// `isCommentThreadRoot`), a sticker with its PNG attachment, keyed by a short name.
func sevenKinds() throws -> [String: InstantJSONAnnotation] {
    [
        "redaction": try InstantJSONAnnotation(
            json: #"{"id":"r1","type":"pspdfkit/markup/redaction","pageIndex":0,"bbox":[60,60,200,30],"overlayText":"REDACTED","v":2}"#),
        "highlight": try InstantJSONAnnotation(json: #"{"id":"h1","type":"pspdfkit/markup/highlight","pageIndex":0,"bbox":[60,200,150,20],"rects":[[60,200,150,20]],"v":2}"#),
        "note": try InstantJSONAnnotation(json: #"{"id":"n1","type":"pspdfkit/note","pageIndex":1,"bbox":[300,100,32,32],"text":{"format":"plain","value":"Reviewer note"},"v":2}"#),
        "sticker": try InstantJSONAnnotation(
            json: #"{"id":"s1","type":"pspdfkit/image","pageIndex":1,"bbox":[400,400,40,30],"imageAttachmentId":"sticker-png","contentType":"image/png","v":2}"#),
        "bates": try InstantJSONAnnotation(
            json: #"{"id":"b1","type":"pspdfkit/text","pageIndex":0,"bbox":[450,760,120,14],"text":{"format":"plain","value":"ABC-000001"},"customData":{"stampType":"bates_stamp"},"v":2}"#),
        "confidentiality": try InstantJSONAnnotation(
            json: #"{"id":"c1","type":"pspdfkit/text","pageIndex":0,"bbox":[40,760,160,14],"text":{"format":"plain","value":"CONFIDENTIAL"},"customData":{"stampType":"confidentiality_stamp"},"v":2}"#),
        "comment": try InstantJSONAnnotation(
            json: #"{"id":"cr1","type":"pspdfkit/markup/highlight","pageIndex":1,"bbox":[60,300,100,20],"rects":[[60,300,100,20]],"isCommentThreadRoot":true,"v":2}"#),
    ]
}

func stickerAttachment() throws -> InstantJSONAttachment {
    try InstantJSONAttachment(id: "sticker-png", contentType: "image/png", data: solidPNG())
}

func sampleThread() throws -> CommentThread {
    CommentThread(rootID: "cr1", comments: [
        try InstantJSONAnnotation(json: #"{"id":"cm1","rootId":"cr1","type":"pspdfkit/comment","text":{"format":"plain","value":"Is this privileged?"},"creatorName":"alice"}"#),
        try InstantJSONAnnotation(json: #"{"id":"cm2","rootId":"cr1","type":"pspdfkit/comment","text":{"format":"plain","value":"No."},"creatorName":"bob"}"#),
    ])
}

/// The PDF with every stream uncompressed (`qpdf --qdf`), as text.
func uncompressed(_ pdf: Data) async throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exch-qdf-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let input = directory.appendingPathComponent("in.pdf"), output = directory.appendingPathComponent("out.pdf")
    try pdf.write(to: input)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/qpdf")
    process.arguments = ["--qdf", "--object-streams=disable", input.path, output.path]
    try process.run()
    process.waitUntilExit()
    return String(decoding: try Data(contentsOf: output), as: UTF8.self)
}
