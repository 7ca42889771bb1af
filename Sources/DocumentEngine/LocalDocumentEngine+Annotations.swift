import Foundation
import ObjectStorage
import ProcessSupport

/// Comment threads and building flattened PDFs in the local engine.
///
/// - Comment threads are kept in `{prefix}/{engineDocumentId}/comments.json`.
/// - ``buildFlattened(pdf:annotations:)`` draws the annotations (redactions first) as page content
///   of an overlay PDF (``FlattenOverlay``) and puts it onto the PDF's pages with
///   `qpdf --flatten-annotations=all --overlay`, so the result's page content shows them and no
///   annotation object is left. Without qpdf it throws ``DocumentEngineError/Code/unsupported``
///   naming what is missing; it never returns the PDF without the annotations.
///
/// What the local redaction does and does not do: it paints an opaque black box (with the
/// redaction's `overlayText`) over the area in the page content. It does **not** remove the text,
/// images or vector graphics underneath from the PDF: a text extractor still finds the covered
/// text. Nutrient's `applyRedactions` removes the content.
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
        let qpdf = try Self.locateQPDF(settings.qpdfPath)
        let directory = (settings.temporaryDirectory as NSString).appendingPathComponent("exchanger-build-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DocumentEngineError(.transient, "cannot create a build directory in \(settings.temporaryDirectory): \(error.localizedDescription)")
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let input = (directory as NSString).appendingPathComponent("input.pdf")
        let overlay = (directory as NSString).appendingPathComponent("overlay.pdf")
        let output = (directory as NSString).appendingPathComponent("output.pdf")
        do {
            try pdf.write(to: URL(fileURLWithPath: input))
        } catch {
            throw DocumentEngineError(.transient, "cannot stage the PDF to build: \(error.localizedDescription)")
        }
        let pages = try await Self.run(qpdf, ["--show-npages", input])
        guard let pageCount = Int(pages.trimmingCharacters(in: .whitespacesAndNewlines)), pageCount > 0 else {
            throw DocumentEngineError(.permanent, "qpdf reports no pages in the PDF to build ('\(pages.prefix(200))')")
        }
        // Uncompressed streams: the local engine reads page text from the content streams itself (PDFTextExtractor).
        var arguments = ["--deterministic-id", "--stream-data=uncompress", "--object-streams=disable", input, "--flatten-annotations=all"]
        if !annotations.annotations.isEmpty {
            let drawn = try FlattenOverlay.pdf(pageCount: pageCount, annotations: annotations)
            do {
                try drawn.write(to: URL(fileURLWithPath: overlay))
            } catch {
                throw DocumentEngineError(.transient, "cannot stage the overlay: \(error.localizedDescription)")
            }
            arguments += ["--overlay", overlay, "--"]
        }
        arguments.append(output)
        _ = try await Self.run(qpdf, arguments)
        do {
            return try Data(contentsOf: URL(fileURLWithPath: output))
        } catch {
            throw DocumentEngineError(.transient, "qpdf wrote no output: \(error.localizedDescription)")
        }
    }

    /// The qpdf executable: `setting` itself when it contains a `/`, else the first match on `PATH`.
    static func locateQPDF(_ setting: String) throws(DocumentEngineError) -> String {
        let fileManager = FileManager.default
        if setting.contains("/") {
            guard fileManager.isExecutableFile(atPath: setting) else {
                throw DocumentEngineError(
                    .unsupported,
                    "brand_in needs qpdf, and '\(setting)' (EXCHANGER_QPDF_PATH) is not an executable file; install qpdf (apt-get install -y qpdf) or fix the path")
            }
            return setting
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = (String(directory) as NSString).appendingPathComponent(setting)
            if fileManager.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw DocumentEngineError(
            .unsupported, "brand_in needs qpdf, and '\(setting)' is not on PATH; install qpdf (apt-get install -y qpdf) or set EXCHANGER_QPDF_PATH")
    }

    /// Runs qpdf; exit 0 and 3 (warnings) succeed, anything else is a permanent error (a PDF qpdf cannot read).
    static func run(_ qpdf: String, _ arguments: [String]) async throws -> String {
        let child: ChildProcess
        do {
            // Its own process group: a worker stopping (the supervisor signals the worker's whole
            // group, as when it scales down) finishes the batch in hand, and this build with it.
            child = try ChildProcess(executable: qpdf, arguments: arguments, stdout: .pipe, stderr: .discard, newProcessGroup: true)
        } catch {
            throw DocumentEngineError(.unsupported, "cannot run qpdf '\(qpdf)': \(error)")
        }
        let output = try await child.readAll()
        let status = try await child.wait()
        if status > 128 {
            // Killed by a signal (an operator, the OOM killer): nothing is wrong with the PDF.
            throw DocumentEngineError(.transient, "qpdf \(arguments.first ?? "") was killed by signal \(status - 128); retrying")
        }
        guard status == 0 || status == 3 else {
            throw DocumentEngineError(.permanent, "qpdf \(arguments.first ?? "") exited with \(status): the PDF cannot be built")
        }
        return output
    }
}
