import Foundation

/// True redaction for the local engine: every page that carries a brand_in redaction is replaced
/// by a picture of itself with the redaction areas painted over, plus an invisible text layer of
/// the words outside them.
///
/// Why rasterise: a page's content can show text in any font and encoding, images in any filter,
/// vector art, shadings and form XObjects; removing exactly what lies under a rectangle from all
/// of that needs a complete PDF interpreter. Rendering the page (poppler's `pdftoppm`) with the
/// areas painted over leaves nothing of the covered content by construction, whatever the page
/// holds. The cost is confined to redacted pages: they become a JPEG (at
/// ``LocalDocumentEngine/Settings/redactionResolution`` dpi) and lose vector sharpness, while every
/// other page stays as it is.
///
/// Per redacted page:
/// 1. the words and their boxes come from poppler's `pdftotext -bbox-layout`. A word whose line
///    box (its horizontal extent across its line's height) overlaps an area is covered, and
///    removed whole, also when only part of it lies under the box;
/// 2. a mask page is drawn with the page's geometry: the areas filled black, the parts of covered
///    words outside them white; the original page goes under it (`qpdf --underlay`, which wraps it
///    in a form XObject, so a clip or an unbalanced `q` in its content cannot hide the mask);
/// 3. `pdftoppm` renders that page, upright as displayed, as a JPEG;
/// 4. the page object keeps its number (outlines and links still point at it) but gets a new
///    dictionary: the same boxes and rotation, the raster as its only image, and the uncovered
///    words as invisible text (render mode 3, Helvetica with Latin-1 codes: characters outside
///    Latin-1 become `?`), line by line at their original positions, so search and copy still work
///    for what is not redacted. Its old contents, resources, annotations, thumbnail, piece info and
///    metadata are dropped;
/// 5. the catalog loses what can keep copies of page content: the structure tree (`/ActualText`,
///    `/Alt`), `/MarkInfo`, the XMP `/Metadata`, `/PieceInfo` and the form fields (`/AcroForm`,
///    already flattened into the pages).
///
/// The result is written by qpdf as a whole new file: only objects reachable from the catalog are
/// kept, so no old content stream, incremental update or orphaned object survives. The overlay
/// (the redaction's fill and overlay text, the other annotations) is drawn afterwards by
/// ``LocalDocumentEngine/buildFlattened(pdf:annotations:)``.
struct PDFRedactor: Sendable {
    var qpdf: PDFTool
    var pdftotext: PDFTool
    var pdftoppm: PDFTool
    /// Raster resolution of redacted pages, dots per inch.
    var resolution: Int
    /// JPEG quality of redacted pages, 1–100.
    var jpegQuality: Int

    /// Catalog entries a redacted document loses.
    static let droppedCatalogKeys = ["/StructTreeRoot", "/MarkInfo", "/Metadata", "/PieceInfo", "/AcroForm"]
    /// The first word's line height of Helvetica in points per point of font size, as poppler measures it
    /// (ascent 0.718 + descent 0.207), and the ascent: the restored text reproduces poppler's word boxes.
    static let lineHeight = 0.925
    static let ascent = 0.718

    /// Writes the redacted copy of `source` (an annotation-flattened PDF) to `output`.
    /// - Parameters:
    ///   - boxes: every page's boxes, in page order.
    ///   - areas: page index → the redaction areas on it, in user space.
    /// - Returns: the number of words removed.
    @discardableResult
    func redact(source: String, boxes: [PageBoxes], areas: [Int: [PageRect]], output: String, directory: String) async throws -> Int {
        let pages = areas.keys.sorted()
        var plans: [PagePlan] = []
        for page in pages {
            guard boxes.indices.contains(page) else {
                throw DocumentEngineError(.invalidAnnotations, "a redaction is on page \(page) of a \(boxes.count)-page PDF")
            }
            let layout = try await pdftotext.run(["-bbox-layout", "-f", "\(page + 1)", "-l", "\(page + 1)", source, "-"])
            let lines = PopplerOutput.lines(bboxLayout: layout).first ?? []
            plans.append(PagePlan(page: page, boxes: boxes[page], areas: areas[page] ?? [], lines: lines))
        }

        // 2. Masks under which the original pages are drawn, then 3. the rasters.
        let masks = (directory as NSString).appendingPathComponent("masks.pdf")
        let masked = (directory as NSString).appendingPathComponent("masked.pdf")
        do {
            try FlattenOverlay.write(pages: plans.map(\.maskContent), boxes: plans.map(\.boxes), images: []).write(to: URL(fileURLWithPath: masks))
        } catch {
            throw DocumentEngineError(.transient, "cannot stage the redaction masks: \(error.localizedDescription)")
        }
        let from = plans.map { "\($0.page + 1)" }.joined(separator: ",")
        try await qpdf.run([masks, "--underlay", source, "--from=\(from)", "--to=1-\(plans.count)", "--", masked])
        var rasters: [Data] = []
        for index in plans.indices {
            let prefix = (directory as NSString).appendingPathComponent("page-\(index)")
            try await pdftoppm.run([
                "-r", "\(resolution)", "-jpeg", "-jpegopt", "quality=\(jpegQuality)", "-f", "\(index + 1)", "-l", "\(index + 1)", "-singlefile",
                masked, prefix,
            ])
            do {
                rasters.append(try Data(contentsOf: URL(fileURLWithPath: prefix + ".jpg")))
            } catch {
                throw DocumentEngineError(.permanent, "pdftoppm rendered no image of page \(plans[index].page + 1): \(error.localizedDescription)")
            }
        }

        // 4.–5. New page dictionaries and catalog, through qpdf's JSON update.
        let header = try await json([source, "--json=2", "--json-key=pages", "--json-key=qpdf", "--json-object=trailer"])
        guard let pageRefs = (header["pages"] as? [[String: Any]])?.compactMap({ $0["object"] as? String }), pageRefs.count == boxes.count,
            let qpdfSection = header["qpdf"] as? [Any], let info = qpdfSection.first as? [String: Any],
            let maxObjectID = (info["maxobjectid"] as? NSNumber)?.intValue,
            let trailer = ((qpdfSection.last as? [String: Any])?["trailer"] as? [String: Any])?["value"] as? [String: Any],
            let root = trailer["/Root"] as? String
        else {
            throw DocumentEngineError(.permanent, "qpdf did not describe the PDF's pages and catalog")
        }
        let wanted = [root] + plans.map { pageRefs[$0.page] }
        let described = try await json(
            [source, "--json=2", "--json-key=qpdf"] + wanted.map { "--json-object=\(Self.objectArgument($0))" })
        guard let objects = (described["qpdf"] as? [Any])?.last as? [String: Any] else {
            throw DocumentEngineError(.permanent, "qpdf did not describe the PDF's objects")
        }
        func value(_ ref: String) -> [String: Any]? { (objects["obj:\(ref)"] as? [String: Any])?["value"] as? [String: Any] }

        var next = maxObjectID
        func newReference() -> String {
            next += 1
            return "\(next) 0 R"
        }
        var updates: [String: Any] = [:]
        let font = newReference()
        updates["obj:\(font)"] = ["value": [
            "/Type": "/Font", "/Subtype": "/Type1", "/BaseFont": "/Helvetica", "/Encoding": "/WinAnsiEncoding",
            "/FirstChar": 32, "/LastChar": 255, "/Widths": [Int](repeating: 500, count: 224),
        ] as [String: Any]]
        var removed = 0
        for (index, plan) in plans.enumerated() {
            let ref = pageRefs[plan.page]
            guard let original = value(ref), let parent = original["/Parent"] else {
                throw DocumentEngineError(.permanent, "qpdf did not describe page \(plan.page + 1) (\(ref))")
            }
            guard let (width, height, components) = FlattenOverlay.jpegSize([UInt8](rasters[index])) else {
                throw DocumentEngineError(.permanent, "pdftoppm wrote an unreadable JPEG of page \(plan.page + 1)")
            }
            let image = newReference()
            let content = newReference()
            updates["obj:\(image)"] = ["stream": [
                "dict": [
                    "/Type": "/XObject", "/Subtype": "/Image", "/Width": width, "/Height": height,
                    "/ColorSpace": components == 1 ? "/DeviceGray" : "/DeviceRGB", "/BitsPerComponent": 8, "/Filter": "/DCTDecode",
                ] as [String: Any],
                "data": rasters[index].base64EncodedString(),
            ] as [String: Any]]
            updates["obj:\(content)"] = ["stream": ["dict": [String: Any](), "data": Data(plan.pageContent.utf8).base64EncodedString()] as [String: Any]]
            var page: [String: Any] = [
                "/Type": "/Page", "/Parent": parent, "/Contents": content,
                "/MediaBox": Self.array(plan.boxes.geometry.mediaBox), "/TrimBox": Self.array(plan.boxes.trimBox),
                "/Rotate": plan.boxes.geometry.rotation,
                "/Resources": ["/XObject": ["/ExRedactedPage": image], "/Font": ["/ExText": font]] as [String: Any],
            ]
            for key in ["/CropBox", "/BleedBox", "/ArtBox", "/UserUnit"] where original[key] != nil { page[key] = original[key] }
            updates["obj:\(ref)"] = ["value": page]
            removed += plan.coveredWords.count
        }
        guard var catalog = value(root) else { throw DocumentEngineError(.permanent, "qpdf did not describe the catalog (\(root))") }
        for key in Self.droppedCatalogKeys { catalog.removeValue(forKey: key) }
        updates["obj:\(root)"] = ["value": catalog]

        let update: [String: Any] = ["qpdf": [
            ["jsonversion": 2, "pushedinheritedpageresources": false, "calledgetallpages": false, "maxobjectid": next] as [String: Any],
            updates,
        ] as [Any]]
        let updatePath = (directory as NSString).appendingPathComponent("redaction.json")
        do {
            try JSONSerialization.data(withJSONObject: update, options: [.sortedKeys, .withoutEscapingSlashes]).write(to: URL(fileURLWithPath: updatePath))
        } catch {
            throw DocumentEngineError(.transient, "cannot stage the redaction update: \(error.localizedDescription)")
        }
        try await qpdf.run(["--deterministic-id", source, "--update-from-json=\(updatePath)", output])
        return removed
    }

    /// qpdf's JSON output of `arguments`, parsed.
    private func json(_ arguments: [String]) async throws -> [String: Any] {
        let text = try await qpdf.run(arguments)
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw DocumentEngineError(.permanent, "qpdf wrote JSON that cannot be read for \(arguments.first ?? "")")
        }
        return object
    }

    /// `"12 0 R"` → `"12,0"`, as `--json-object` takes it.
    static func objectArgument(_ reference: String) -> String {
        let parts = reference.split(separator: " ")
        return parts.count >= 2 ? "\(parts[0]),\(parts[1])" : reference
    }

    static func array(_ rect: PageRect) -> [Double] { [rect.minX, rect.minY, rect.maxX, rect.maxY] }

    /// What happens to one redacted page.
    struct PagePlan: Sendable {
        /// A line of kept words: their boxes in user space and the direction the text advances in
        /// user space (an axis: `(±1, 0)` or `(0, ±1)`).
        struct Line: Sendable {
            var words: [PDFWord]
            var direction: (x: Double, y: Double)
        }

        var page: Int
        var boxes: PageBoxes
        /// Redaction areas in user space.
        var areas: [PageRect]
        /// Words outside every area, by line.
        var keptLines: [Line] = []
        /// Words (line-stretched boxes, display space) that overlap an area.
        var coveredWords: [PDFWord] = []

        init(page: Int, boxes: PageBoxes, areas: [PageRect], lines: [PDFTextLine]) {
            self.page = page
            self.boxes = boxes
            self.areas = areas
            let geometry = boxes.geometry
            let displayAreas = areas.map { geometry.displayRect($0) }
            for line in lines {
                guard let first = line.words.first, let last = line.words.last else { continue }
                let minX = line.words.map(\.box.minX).min() ?? 0, maxX = line.words.map(\.box.maxX).max() ?? 0
                let minY = line.words.map(\.box.minY).min() ?? 0, maxY = line.words.map(\.box.maxY).max() ?? 0
                // Text runs across the display (left to right) or down / up it (a page turned by /Rotate).
                let horizontal = maxX - minX >= maxY - minY
                let displayDirection: (u: Double, v: Double) =
                    if horizontal {
                        (1, 0)
                    } else if line.words.count > 1 {
                        (0, last.box.minY >= first.box.minY ? 1 : -1)
                    } else {
                        (0, geometry.rotation == 270 ? -1 : 1)
                    }
                var kept: [PDFWord] = []
                for word in line.words {
                    // Each word spans its whole line across the direction of the text.
                    let box =
                        horizontal
                        ? PageRect(minX: word.box.minX, minY: minY, maxX: word.box.maxX, maxY: maxY)
                        : PageRect(minX: minX, minY: word.box.minY, maxX: maxX, maxY: word.box.maxY)
                    let stretched = PDFWord(text: word.text, box: box)
                    if displayAreas.contains(where: { $0.overlaps(box) }) {
                        coveredWords.append(stretched)
                    } else {
                        kept.append(PDFWord(text: word.text, box: geometry.userRect(display: box)))
                    }
                }
                let origin = geometry.userPoint(u: 0, v: 0)
                let step = geometry.userPoint(u: displayDirection.u, v: displayDirection.v)
                if !kept.isEmpty { keptLines.append(Line(words: kept, direction: (step.x - origin.x, step.y - origin.y))) }
            }
        }

        /// The mask drawn over the original page: covered words white, then the areas black.
        var maskContent: String {
            let geometry = boxes.geometry
            var ops: [String] = []
            if !coveredWords.isEmpty {
                ops.append("q 1 1 1 rg")
                for word in coveredWords {
                    let rect = geometry.userRect(display: word.box)
                    ops.append(FlattenOverlay.re(rect) + " f")
                }
                ops.append("Q")
            }
            ops.append("q 0 0 0 rg")
            for area in areas {
                ops.append(FlattenOverlay.re(area) + " f")
            }
            ops.append("Q")
            return ops.joined(separator: "\n")
        }

        /// The new page content: the raster over the whole page, then the kept words as invisible
        /// text, each line advancing along its direction with the glyphs' tops towards `up`.
        var pageContent: String {
            let geometry = boxes.geometry
            var ops = ["q " + geometry.displayImageMatrix.map(FlattenOverlay.fmt).joined(separator: " ") + " cm /ExRedactedPage Do Q"]
            for line in keptLines {
                guard let first = line.words.first else { continue }
                let d = line.direction
                let up = (x: -d.y, y: d.x)
                /// The lowest value of `vector · corner` over the box's corners.
                func low(_ box: PageRect, _ vector: (x: Double, y: Double)) -> Double {
                    min(vector.x * box.minX, vector.x * box.maxX) + min(vector.y * box.minY, vector.y * box.maxY)
                }
                let thickness = abs(d.x) > 0 ? first.box.height : first.box.width
                let size = max(thickness / PDFRedactor.lineHeight, 0.5)
                let along = low(first.box, d)
                let across = low(first.box, up) + (PDFRedactor.lineHeight - PDFRedactor.ascent) * size
                let origin = (x: d.x * along + up.x * across, y: d.y * along + up.y * across)
                let matrix = [d.x, d.y, up.x, up.y, origin.x, origin.y].map(FlattenOverlay.fmt).joined(separator: " ")
                ops.append("BT 3 Tr /ExText \(FlattenOverlay.fmt(size)) Tf \(matrix) Tm")
                var previous = along
                for (index, word) in line.words.enumerated() {
                    let bytes = Self.latin1(word.text)
                    guard !bytes.isEmpty else { continue }
                    let start = low(word.box, d)
                    if index > 0 { ops.append("\(FlattenOverlay.fmt(start - previous)) 0 Td") }
                    previous = start
                    let length = abs(d.x) > 0 ? word.box.width : word.box.height
                    let scale = 100 * length / (Double(bytes.count) * 0.5 * size)
                    let string = Self.literal(bytes)
                    // A large negative adjustment after all but the last word reads as a word gap.
                    let show = index < line.words.count - 1 ? "[\(string) -1000] TJ" : "\(string) Tj"
                    ops.append("\(FlattenOverlay.fmt(scale)) Tz \(show)")
                }
                ops.append("ET")
            }
            return ops.joined(separator: "\n")
        }

        /// The word's characters as Latin-1 codes (WinAnsi agrees with Latin-1 there); others become `?`.
        static func latin1(_ text: String) -> [UInt8] {
            text.unicodeScalars.map { scalar in
                (0x20...0x7E).contains(scalar.value) || (0xA0...0xFF).contains(scalar.value) ? UInt8(scalar.value) : UInt8(ascii: "?")
            }
        }

        /// A PDF literal string, with `(`, `)` and `\` escaped and bytes outside printable ASCII in octal.
        static func literal(_ bytes: [UInt8]) -> String {
            var result = "("
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "\\"): result += "\\" + String(UnicodeScalar(byte))
                case 0x20...0x7E: result += String(UnicodeScalar(byte))
                default: result += "\\" + String(byte, radix: 8)
                }
            }
            return result + ")"
        }
    }
}
