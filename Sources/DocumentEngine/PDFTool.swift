import Foundation
import ProcessSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An external PDF program the local engine runs: qpdf (flattening, overlays, object updates) and
/// poppler's pdfinfo, pdftotext and pdftoppm (page geometry, word boxes, rendering) for brand_in.
///
/// Each runs in a process group of its own, so a worker stopping (the supervisor signals the
/// worker's whole group when it scales down) finishes the build in hand. A program killed by a
/// signal is a transient failure (nothing is wrong with the PDF); any other failing exit status is
/// permanent (a PDF the program cannot read). A program still running after ``timeout`` (a PDF
/// that hangs it) has its whole process group killed, and that is transient too: the document is
/// retried, and a document that hangs every time ends in the dead-letter queue after its retries,
/// instead of holding its exchange forever.
struct PDFTool: Sendable {
    /// The program's name, as installed (`qpdf`, `pdftoppm`, …).
    var name: String
    /// The executable's path.
    var path: String
    /// Exit statuses that mean success (qpdf exits 3 for "succeeded with warnings").
    var successStatuses: Set<Int32> = [0]
    /// How long one run may take (``LocalDocumentEngine/Settings/toolTimeout``).
    var timeout: Duration = .seconds(300)

    /// The program `setting` names: `setting` itself when it contains a `/`, else the first match of
    /// `setting` on `PATH`. Throws ``DocumentEngineError/Code/unsupported`` naming the setting and
    /// the package to install.
    static func locate(
        _ setting: String, name: String, variable: String, package: String, successStatuses: Set<Int32> = [0], timeout: Duration = .seconds(300)
    ) throws(DocumentEngineError) -> PDFTool {
        let fileManager = FileManager.default
        if setting.contains("/") {
            guard fileManager.isExecutableFile(atPath: setting) else {
                throw DocumentEngineError(
                    .unsupported,
                    "brand_in needs \(name), and '\(setting)' (\(variable)) is not an executable file; install \(package) (apt-get install -y \(package)) or fix the path")
            }
            return PDFTool(name: name, path: setting, successStatuses: successStatuses, timeout: timeout)
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = (String(directory) as NSString).appendingPathComponent(setting)
            if fileManager.isExecutableFile(atPath: candidate) {
                return PDFTool(name: name, path: candidate, successStatuses: successStatuses, timeout: timeout)
            }
        }
        throw DocumentEngineError(
            .unsupported, "brand_in needs \(name), and '\(setting)' is not on PATH; install \(package) (apt-get install -y \(package)) or set \(variable)")
    }

    /// Runs the program and returns its standard output (standard error is discarded).
    @discardableResult
    func run(_ arguments: [String]) async throws -> String {
        var attempt = 0
        let child: ChildProcess
        // Its error output, read when it fails: a full disk is transient, and anything else is named.
        let errors = NSTemporaryDirectory() + "/exchanger-\(name)-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).err"
        defer { unlink(errors) }
        while true {
            do {
                child = try ChildProcess(executable: path, arguments: arguments, stdout: .pipe, stderr: .file(errors), newProcessGroup: true)
                break
            } catch let error as ChildProcessError where error.code == ETXTBSY && attempt < 5 {
                // The program file is still open for writing somewhere (being installed): try again shortly.
                attempt += 1
                try await Task.sleep(for: .milliseconds(50 * attempt))
            } catch {
                throw DocumentEngineError(.unsupported, "cannot run \(name) '\(path)': \(error)")
            }
        }
        let timedOut = Mutex(false)
        let limit = timeout
        let watchdog = Task {
            try await Task.sleep(for: limit)
            timedOut.withLock { $0 = true }
            child.signal(SIGKILL, group: true)
        }
        let output: String
        let status: Int32
        do {
            output = try await child.readAll()
            status = try await child.wait()
        } catch {
            watchdog.cancel()
            child.signal(SIGKILL, group: true)
            throw error
        }
        watchdog.cancel()
        if timedOut.withLock({ $0 }) {
            throw DocumentEngineError(
                .transient, "\(name) \(arguments.first ?? "") did not finish within \(limit) (EXCHANGER_PDF_TOOL_TIMEOUT_SECONDS) and was killed; retrying")
        }
        if status > 128 {
            // Killed by a signal (an operator, the OOM killer): nothing is wrong with the PDF.
            throw DocumentEngineError(.transient, "\(name) \(arguments.first ?? "") was killed by signal \(status - 128); retrying")
        }
        guard successStatuses.contains(status) else {
            let said = Self.lastLines(of: errors)
            if Self.isOutOfSpace(said) {
                throw DocumentEngineError(.transient, "\(name) \(arguments.first ?? "") ran out of disk space (\(said)); retrying")
            }
            throw DocumentEngineError(
                .permanent, "\(name) \(arguments.first ?? "") exited with \(status): the PDF cannot be built" + (said.isEmpty ? "" : " (\(said))"))
        }
        return output
    }

    /// Whether a tool's error output says the disk (or the quota) is full.
    static func isOutOfSpace(_ text: String) -> Bool {
        let lowered = text.lowercased()
        return lowered.contains("no space left on device") || lowered.contains("disk quota exceeded")
    }

    /// The last 300 bytes of a tool's error output, on one line.
    static func lastLines(of path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return "" }
        return String(decoding: data.suffix(300), as: UTF8.self).split(whereSeparator: \.isNewline).joined(separator: " | ")
            .trimmingCharacters(in: .whitespaces)
    }
}

/// Poppler's programs the local engine's brand_in runs (package `poppler-utils`).
struct PopplerTools: Sendable {
    var pdfinfo: PDFTool
    var pdftotext: PDFTool
    var pdftoppm: PDFTool

    /// The programs `settings` names; throws ``DocumentEngineError/Code/unsupported`` naming the first one missing.
    init(_ settings: LocalDocumentEngine.Settings) throws(DocumentEngineError) {
        let timeout = settings.toolTimeout
        pdfinfo = try PDFTool.locate(
            settings.pdfinfoPath, name: "pdfinfo", variable: DocumentEngines.pdfinfoVariable, package: "poppler-utils", timeout: timeout)
        pdftotext = try PDFTool.locate(
            settings.pdftotextPath, name: "pdftotext", variable: DocumentEngines.pdftotextVariable, package: "poppler-utils", timeout: timeout)
        pdftoppm = try PDFTool.locate(
            settings.pdftoppmPath, name: "pdftoppm", variable: DocumentEngines.pdftoppmVariable, package: "poppler-utils", timeout: timeout)
    }
}
