import Foundation
import ObjectStorage
import ProcessSupport

/// Comment threads and building flattened PDFs in the local engine.
///
/// - Comment threads are kept in `{prefix}/{engineDocumentId}/comments.json`.
/// - ``buildFlattened(pdf:annotations:)`` flattens the PDF's own annotations, applies the
///   redactions (``PDFRedactor``: every page with a redaction is replaced by a raster of itself
///   with the areas painted over and an invisible text layer of the uncovered words, so nothing
///   under a redaction stays in the file), then draws the annotations (redactions first, with
///   their overlay text) as page content of an overlay PDF (``FlattenOverlay``) put onto the
///   pages with `qpdf --overlay`; no annotation object is left. Without qpdf, or without
///   poppler's pdfinfo, pdftotext and pdftoppm when there are annotations, it throws
///   ``DocumentEngineError/Code/unsupported`` naming what is missing; it never returns the PDF
///   without the annotations or with a redaction only drawn.
extension LocalDocumentEngine {
    public func commentThreads(_ id: EngineDocumentID) async throws -> [CommentThread] {
        _ = try await info(id)
        let key = try key { () throws(ObjectStorageError) in try DocumentEngineKeys.comments(id, prefix: settings.prefix) }
        let data: Data
        do {
            data = try await store.get(key)
        } catch let error as ObjectStorageError where error.code == .notFound {
            return []
        } catch let error as ObjectStorageError {
            throw DocumentEngineError.storage(error, "read the comments of \(id)")
        }
        return try CommentThread.threads(document: data)
    }

    public func putCommentThreads(_ id: EngineDocumentID, _ threads: [CommentThread]) async throws {
        var merged = Dictionary(uniqueKeysWithValues: try await commentThreads(id).map { ($0.rootID, $0) })
        for thread in threads {
            var current = merged[thread.rootID] ?? CommentThread(rootID: thread.rootID, comments: [])
            let known = Set(current.comments.map { $0.id ?? $0.json })
            current.comments.append(contentsOf: thread.comments.filter { !known.contains($0.id ?? $0.json) })
            merged[thread.rootID] = current
        }
        let key = try key { () throws(ObjectStorageError) in try DocumentEngineKeys.comments(id, prefix: settings.prefix) }
        let data = CommentThread.documentData(Array(merged.values))
        try await storage("write the comments of \(id)") { try await store.put(key, data, contentType: "application/json") }
    }

    public func buildFlattened(pdf: Data, annotations: InstantJSON) async throws -> Data {
        let qpdf = try PDFTool.locate(
            settings.qpdfPath, name: "qpdf", variable: DocumentEngines.qpdfVariable, package: "qpdf", successStatuses: [0, 3],
            timeout: settings.toolTimeout)
        let tools = annotations.annotations.isEmpty ? nil : try PopplerTools(settings)
        let directory = (settings.temporaryDirectory as NSString).appendingPathComponent("exchanger-build-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DocumentEngineError(.transient, "cannot create a build directory in \(settings.temporaryDirectory): \(error.localizedDescription)")
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        let input = path("input.pdf")
        let output = path("output.pdf")
        do {
            try pdf.write(to: URL(fileURLWithPath: input))
        } catch {
            throw DocumentEngineError(.transient, "cannot stage the PDF to build: \(error.localizedDescription)")
        }
        let pages = try await qpdf.run(["--show-npages", input])
        guard let pageCount = Int(pages.trimmingCharacters(in: .whitespacesAndNewlines)), pageCount > 0 else {
            throw DocumentEngineError(.permanent, "qpdf reports no pages in the PDF to build ('\(pages.prefix(200))')")
        }
        // Uncompressed streams: the local engine reads page text from the content streams itself (PDFTextExtractor).
        var arguments = ["--deterministic-id", "--stream-data=uncompress", "--object-streams=disable"]
        if let tools {
            // Annotations already in the PDF are drawn into its pages first, so that redaction covers them too.
            let flat = path("flat.pdf")
            try await qpdf.run(["--deterministic-id", input, "--generate-appearances", "--flatten-annotations=all", flat])
            let info = try await tools.pdfinfo.run(["-f", "1", "-l", "\(pageCount)", "-box", flat])
            let byNumber = PopplerOutput.pageBoxes(pdfinfo: info)
            let boxes = try (1...pageCount).map { page throws(DocumentEngineError) in
                guard let found = byNumber[page] else { throw DocumentEngineError(.permanent, "pdfinfo reports no boxes for page \(page)") }
                return found
            }
            let areas = try FlattenOverlay.redactionAreas(annotations, pages: boxes)
            var current = flat
            if !areas.isEmpty {
                current = path("redacted.pdf")
                let redactor = PDFRedactor(
                    qpdf: qpdf, pdftotext: tools.pdftotext, pdftoppm: tools.pdftoppm,
                    resolution: settings.redactionResolution, jpegQuality: settings.redactionJPEGQuality)
                try await redactor.redact(source: flat, boxes: boxes, areas: areas, output: current, directory: directory)
            }
            let overlay = path("overlay.pdf")
            do {
                try FlattenOverlay.pdf(pages: boxes, annotations: annotations).write(to: URL(fileURLWithPath: overlay))
            } catch let error as DocumentEngineError {
                throw error
            } catch {
                throw DocumentEngineError(.transient, "cannot stage the overlay: \(error.localizedDescription)")
            }
            arguments += [current, "--flatten-annotations=all", "--overlay", overlay, "--"]
        } else {
            arguments += [input, "--flatten-annotations=all"]
        }
        arguments.append(output)
        try await qpdf.run(arguments)
        do {
            return try Data(contentsOf: URL(fileURLWithPath: output))
        } catch {
            throw DocumentEngineError(.transient, "qpdf wrote no output: \(error.localizedDescription)")
        }
    }
}
