import Foundation

/// Draws Instant JSON annotations as PDF page content: the overlay PDF the local engine puts onto
/// a PDF's pages with `qpdf --overlay` (``LocalDocumentEngine/buildFlattened(pdf:annotations:)``).
///
/// Coordinates: Instant JSON `bbox` is `[left, top, width, height]` in annotation space (points
/// from the top-left corner of the page's media box, before `/Rotate`; see ``PageGeometry``). Each
/// overlay page has its destination page's media box, trim box and rotation, so qpdf places it
/// one to one. Per page, redactions are drawn first, then every other annotation in order.
struct FlattenOverlay {
    /// The annotation types this renderer draws.
    static let drawableTypes: Set<String> = [
        "pspdfkit/markup/redaction", "pspdfkit/markup/highlight", "pspdfkit/note", "pspdfkit/image", "pspdfkit/text",
    ]

    struct Image {
        var name: String
        var dictionary: String
        var data: Data
    }

    /// The overlay PDF of `pageCount` pages; throws ``DocumentEngineError/Code/unsupported`` for an
    /// annotation type or image format it cannot draw, ``DocumentEngineError/Code/invalidAnnotations``
    /// for an annotation without a usable `bbox` or `pageIndex`.
    static func pdf(pages boxes: [PageBoxes], annotations: InstantJSON) throws(DocumentEngineError) -> Data {
        let pageCount = boxes.count
        var pages = [[String]](repeating: [], count: pageCount)
        var images: [Image] = []
        let attachments = Dictionary(uniqueKeysWithValues: annotations.attachments.map { ($0.id, $0) })
        // Redactions first: everything else is drawn over them (overlap correctness).
        let ordered = annotations.annotations.filter { $0.type == "pspdfkit/markup/redaction" }
            + annotations.annotations.filter { $0.type != "pspdfkit/markup/redaction" }
        for annotation in ordered {
            guard let type = annotation.type, drawableTypes.contains(type) else {
                throw DocumentEngineError(
                    .unsupported, "the local engine cannot flatten annotation type '\(annotation.type ?? "none")' (\(annotation.id ?? "no id"))")
            }
            guard let object = try annotation.object() as? [String: Any] else {
                throw DocumentEngineError(.invalidAnnotations, "annotation \(annotation.id ?? "") is not an object")
            }
            let pageIndex = (object["pageIndex"] as? NSNumber)?.intValue ?? -1
            guard pages.indices.contains(pageIndex) else {
                throw DocumentEngineError(.invalidAnnotations, "annotation \(annotation.id ?? "") is on page \(pageIndex) of a \(pageCount)-page PDF")
            }
            guard let box = object["bbox"] as? [NSNumber], box.count == 4 else {
                throw DocumentEngineError(.invalidAnnotations, "annotation \(annotation.id ?? "") has no bbox [left, top, width, height]")
            }
            let area = boxes[pageIndex].geometry.userRect(annotationBox: box.map(\.doubleValue))
            let left = area.minX, bottom = area.minY, width = area.width, height = area.height
            let rect = re(area)
            var ops: [String] = []
            switch type {
            case "pspdfkit/markup/redaction":
                let areas = try redactionAreas(InstantJSON(annotations: [annotation], attachments: []), pages: boxes)[pageIndex] ?? []
                ops.append("q 0 0 0 rg " + areas.map { re($0) + " f" }.joined(separator: " ") + " Q")
                if let overlay = object["overlayText"] as? String, !overlay.isEmpty {
                    ops.append(text(overlay, x: left + 2, y: bottom + 2, size: min(12, max(4, height - 4)), color: "1 1 1"))
                }
            case "pspdfkit/markup/highlight":
                ops.append("q /GSHighlight gs 1 1 0 rg \(rect) f Q")
            case "pspdfkit/note":
                ops.append("q 1 0.9 0.4 rg 0 0 0 RG \(rect) B Q")
                let body = ((object["text"] as? [String: Any])?["value"] as? String) ?? ""
                if !body.isEmpty { ops.append(text(body, x: left + 2, y: bottom + 2, size: 8, color: "0 0 0")) }
            case "pspdfkit/image":
                guard let attachmentID = object["imageAttachmentId"] as? String, let attachment = attachments[attachmentID] else {
                    throw DocumentEngineError(.invalidAnnotations, "image annotation \(annotation.id ?? "") has no attachment in the Instant JSON")
                }
                let name = "Im\(images.count)"
                let (dictionary, data) = try imageStream(attachment)
                images.append(Image(name: name, dictionary: dictionary, data: data))
                ops.append("q \(fmt(width)) 0 0 \(fmt(height)) \(fmt(left)) \(fmt(bottom)) cm /\(name) Do Q")
            default:  // pspdfkit/text: bates numbers, confidentiality stamps, free text
                let value = ((object["text"] as? [String: Any])?["value"] as? String) ?? (object["text"] as? String) ?? ""
                let size = (object["fontSize"] as? NSNumber)?.doubleValue ?? 10
                ops.append(text(value, x: left, y: bottom + 2, size: size, color: "0 0 0"))
            }
            pages[pageIndex].append(contentsOf: ops)
        }
        return write(pages: pages.map { $0.joined(separator: "\n") }, boxes: boxes, images: images)
    }

    /// Page index → the user-space areas of the redactions on it: each redaction's `rects` when it
    /// has any, else its `bbox`. Throws ``DocumentEngineError/Code/invalidAnnotations`` for a
    /// redaction whose page or areas cannot be read: a redaction is never skipped.
    static func redactionAreas(_ annotations: InstantJSON, pages: [PageBoxes]) throws(DocumentEngineError) -> [Int: [PageRect]] {
        var result: [Int: [PageRect]] = [:]
        for annotation in annotations.annotations where annotation.type == "pspdfkit/markup/redaction" {
            guard let object = try annotation.object() as? [String: Any] else {
                throw DocumentEngineError(.invalidAnnotations, "redaction \(annotation.id ?? "") is not an object")
            }
            guard let pageIndex = (object["pageIndex"] as? NSNumber)?.intValue, pages.indices.contains(pageIndex) else {
                throw DocumentEngineError(
                    .invalidAnnotations, "redaction \(annotation.id ?? "") is on page \(String(describing: object["pageIndex"])) of a \(pages.count)-page PDF")
            }
            var boxes: [[Double]] = []
            if let rects = object["rects"] as? [Any], !rects.isEmpty {
                for rect in rects {
                    guard let numbers = rect as? [NSNumber], numbers.count == 4 else {
                        throw DocumentEngineError(.invalidAnnotations, "redaction \(annotation.id ?? "") has a rect that is not [left, top, width, height]")
                    }
                    boxes.append(numbers.map(\.doubleValue))
                }
            } else if let box = object["bbox"] as? [NSNumber], box.count == 4 {
                boxes.append(box.map(\.doubleValue))
            } else {
                throw DocumentEngineError(.invalidAnnotations, "redaction \(annotation.id ?? "") has no bbox [left, top, width, height]")
            }
            for box in boxes {
                guard box.allSatisfy({ $0.isFinite }), box[2] > 0, box[3] > 0 else {
                    throw DocumentEngineError(.invalidAnnotations, "redaction \(annotation.id ?? "") has an empty or invalid area \(box)")
                }
                result[pageIndex, default: []].append(pages[pageIndex].geometry.userRect(annotationBox: box))
            }
        }
        return result
    }

    static func fmt(_ value: Double) -> String { String(format: "%.4f", value) }

    /// The `re` operation of a user-space rectangle: `x y width height re`.
    static func re(_ rect: PageRect) -> String { "\(fmt(rect.minX)) \(fmt(rect.minY)) \(fmt(rect.width)) \(fmt(rect.height)) re" }

    /// `[minX minY maxX maxY]`.
    static func array(_ rect: PageRect) -> String { "[\(fmt(rect.minX)) \(fmt(rect.minY)) \(fmt(rect.maxX)) \(fmt(rect.maxY))]" }

    /// A text-showing operation in Helvetica; characters outside printable ASCII become `?`.
    static func text(_ value: String, x: Double, y: Double, size: Double, color: String) -> String {
        "BT \(color) rg /FHelv \(fmt(size)) Tf \(fmt(x)) \(fmt(y)) Td (\(escaped(value))) Tj ET"
    }

    /// PDF literal-string escaping, one line, printable ASCII.
    static func escaped(_ value: String) -> String {
        value.unicodeScalars.map { scalar -> String in
            switch scalar {
            case "(", ")", "\\": "\\" + String(scalar)
            case _ where scalar.value < 0x20 || scalar.value > 0x7e: "?"
            default: String(scalar)
            }
        }.joined()
    }

    /// The image XObject for a JPEG (DCTDecode) or an 8-bit gray / RGB, non-interlaced PNG
    /// (its IDAT stream with the PNG predictor); anything else is unsupported.
    static func imageStream(_ attachment: InstantJSONAttachment) throws(DocumentEngineError) -> (String, Data) {
        let bytes = [UInt8](attachment.data)
        if bytes.starts(with: [0xFF, 0xD8]), let (width, height, components) = jpegSize(bytes) {
            let space = components == 1 ? "/DeviceGray" : "/DeviceRGB"
            return ("/Type /XObject /Subtype /Image /Width \(width) /Height \(height) /ColorSpace \(space) /BitsPerComponent 8 /Filter /DCTDecode",
                    attachment.data)
        }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            var offset = 8
            var width = 0, height = 0, colorType = -1, depth = 0, interlace = 0
            var idat = Data()
            while offset + 8 <= bytes.count {
                let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
                let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
                let start = offset + 8
                guard start + length + 4 <= bytes.count else { break }
                if type == "IHDR", length >= 13 {
                    width = Int(bytes[start]) << 24 | Int(bytes[start + 1]) << 16 | Int(bytes[start + 2]) << 8 | Int(bytes[start + 3])
                    height = Int(bytes[start + 4]) << 24 | Int(bytes[start + 5]) << 16 | Int(bytes[start + 6]) << 8 | Int(bytes[start + 7])
                    depth = Int(bytes[start + 8])
                    colorType = Int(bytes[start + 9])
                    interlace = Int(bytes[start + 12])
                } else if type == "IDAT" {
                    idat.append(contentsOf: bytes[start..<(start + length)])
                }
                offset = start + length + 4
            }
            if width > 0, height > 0, depth == 8, interlace == 0, colorType == 0 || colorType == 2, !idat.isEmpty {
                let colors = colorType == 0 ? 1 : 3
                let space = colors == 1 ? "/DeviceGray" : "/DeviceRGB"
                return ("/Type /XObject /Subtype /Image /Width \(width) /Height \(height) /ColorSpace \(space) /BitsPerComponent 8 /Filter /FlateDecode /DecodeParms << /Predictor 15 /Colors \(colors) /BitsPerComponent 8 /Columns \(width) >>",
                        idat)
            }
            throw DocumentEngineError(
                .unsupported,
                "the local engine flattens 8-bit gray or RGB non-interlaced PNGs and JPEGs; sticker \(attachment.id) is a PNG with colour type \(colorType), depth \(depth), interlace \(interlace)")
        }
        throw DocumentEngineError(.unsupported, "the local engine flattens PNG and JPEG stickers; attachment \(attachment.id) (\(attachment.contentType)) is neither")
    }

    /// A JPEG's width, height and colour components, from its first start-of-frame marker.
    static func jpegSize(_ bytes: [UInt8]) -> (Int, Int, Int)? {
        var offset = 2
        while offset + 9 < bytes.count {
            guard bytes[offset] == 0xFF else { return nil }
            let marker = bytes[offset + 1]
            let length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            if (0xC0...0xC3).contains(marker) {
                let height = Int(bytes[offset + 5]) << 8 | Int(bytes[offset + 6])
                let width = Int(bytes[offset + 7]) << 8 | Int(bytes[offset + 8])
                return (width, height, Int(bytes[offset + 9]))
            }
            offset += 2 + length
        }
        return nil
    }

    /// A PDF of pages with the given contents and the given boxes and rotations, Helvetica as
    /// `/FHelv`, a 40 %-opacity graphics state `/GSHighlight`, and the images on every page's resources.
    static func write(pages: [String], boxes: [PageBoxes], images: [Image]) -> Data {
        // 1 catalog, 2 pages, 3 font, 4 graphics state, 5… images, then per page a page and its content.
        var objects: [Data] = []
        objects.append(Data("<< /Type /Catalog /Pages 2 0 R >>".utf8))
        let firstPage = 5 + images.count
        let kids = pages.indices.map { "\(firstPage + 2 * $0) 0 R" }.joined(separator: " ")
        objects.append(Data("<< /Type /Pages /Kids [\(kids)] /Count \(pages.count) >>".utf8))
        objects.append(Data("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".utf8))
        objects.append(Data("<< /Type /ExtGState /ca 0.4 /CA 0.4 >>".utf8))
        for image in images {
            var object = Data("<< \(image.dictionary) /Length \(image.data.count) >>\nstream\n".utf8)
            object.append(image.data)
            object.append(Data("\nendstream".utf8))
            objects.append(object)
        }
        let xobjects = images.enumerated().map { "/\($0.element.name) \(5 + $0.offset) 0 R" }.joined(separator: " ")
        for (index, content) in pages.enumerated() {
            let page = boxes[index]
            let geometry = "/MediaBox \(array(page.geometry.mediaBox)) /TrimBox \(array(page.trimBox)) /Rotate \(page.geometry.rotation)"
            objects.append(Data(
                "<< /Type /Page /Parent 2 0 R \(geometry) /Contents \(firstPage + 2 * index + 1) 0 R /Resources << /Font << /FHelv 3 0 R >> /ExtGState << /GSHighlight 4 0 R >> /XObject << \(xobjects) >> >> >>"
                    .utf8))
            objects.append(Data("<< /Length \(content.utf8.count) >>\nstream\n\(content)\nendstream".utf8))
        }
        var output = Data("%PDF-1.4\n".utf8)
        var offsets: [Int] = []
        for (index, body) in objects.enumerated() {
            offsets.append(output.count)
            output.append(Data("\(index + 1) 0 obj\n".utf8))
            output.append(body)
            output.append(Data("\nendobj\n".utf8))
        }
        let xref = output.count
        var trailer = "xref\n0 \(objects.count + 1)\n0000000000 65535 f \n"
        for offset in offsets { trailer += String(format: "%010d 00000 n \n", offset) }
        trailer += "trailer\n<< /Size \(objects.count + 1) /Root 1 0 R >>\nstartxref\n\(xref)\n%%EOF\n"
        output.append(Data(trailer.utf8))
        return output
    }
}
