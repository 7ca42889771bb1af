/// Renders an exchange's progress: on a terminal a bar per stage redrawn in place, otherwise plain
/// lines, one when something changed (at most one per `plainInterval` while only counts move).
/// A plain value: feed it statuses, write what it returns.
public struct ExchangeProgress: Sendable {
    /// Bars redrawn in place (a terminal) or plain lines.
    public let interactive: Bool
    /// Width of a bar in characters.
    public var barWidth = 30
    /// Least time between two plain lines while only the counts change.
    public var plainInterval: Duration = .seconds(1)

    private var drawnLines = 0
    private var lastPlain: (state: String, counts: String, at: Duration)?

    /// The order stages are shown in.
    public static let stageOrder = ["s3-copy", "pre-uploader", "uploader", "re-ocr", "search-text"]

    /// A renderer for a terminal (`interactive`) or for a log.
    public init(interactive: Bool) {
        self.interactive = interactive
    }

    /// The text to write for `status` at `elapsed` since the start; nil when nothing is to be written.
    public mutating func render(_ status: ExchangeStatus, elapsed: Duration) -> String? {
        let stages = Self.stageOrder.filter { status.stages[$0] != nil } + status.stages.keys.filter { !Self.stageOrder.contains($0) }.sorted()
        let total = status.documents.total
        let seconds = Self.seconds(elapsed)
        let state = status.teardownTarget.map { "\(status.state)→\($0)" } ?? status.state
        let step = status.step.number.map { " (\($0)/\(status.step.of))" } ?? ""
        if interactive {
            var lines = ["exchange \(status.jobId)  \(state)\(step)  \(status.step.description)  \(seconds)"]
            for name in stages {
                guard let stage = status.stages[name] else { continue }
                lines.append("  " + Self.pad(name, 13) + bar(done: stage.done + stage.failed, total: total)
                    + "  " + Self.count(stage.done, total) + (stage.failed > 0 ? "  failed \(stage.failed)" : ""))
            }
            if let error = status.error { lines.append("  error: \(error)") }
            var text = drawnLines > 0 ? "\u{1B}[\(drawnLines)A" : ""
            for line in lines { text += "\r\u{1B}[2K" + line + "\n" }
            drawnLines = lines.count
            return text
        }
        let counts = stages.compactMap { name in
            status.stages[name].map { "\(name) \(Self.count($0.done, total))" + ($0.failed > 0 ? " (failed \($0.failed))" : "") }
        }.joined(separator: "  ")
        if let last = lastPlain {
            if last.state == state && last.counts == counts && !status.isFinal { return nil }
            if last.state == state && elapsed - last.at < plainInterval && !status.isFinal { return nil }
            if status.isFinal && last.state == state && last.counts == counts { return nil }
        }
        lastPlain = (state, counts, elapsed)
        var line = "\(Self.pad(seconds, 8)) \(state)\(step)"
        if !counts.isEmpty { line += "  " + counts }
        if let error = status.error { line += "  error: \(error)" }
        return line + "\n"
    }

    private func bar(done: Int, total: Int?) -> String {
        guard let total, total > 0 else { return "[" + String(repeating: "·", count: barWidth) + "]" }
        let filled = min(barWidth, done * barWidth / total)
        return "[" + String(repeating: "█", count: filled) + String(repeating: "·", count: barWidth - filled) + "]"
    }

    private static func count(_ done: Int, _ total: Int?) -> String {
        total.map { "\(done)/\($0)" } ?? "\(done)/?"
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }

    /// `elapsed` as `12.3s`.
    public static func seconds(_ elapsed: Duration) -> String {
        let (whole, atto) = elapsed.components
        let tenths = (whole * 10 + atto / 100_000_000_000_000_000)
        return "\(tenths / 10).\(tenths % 10)s"
    }
}
