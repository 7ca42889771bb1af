/// Where a child's output comes from: the fields the supervisor puts first on every line it
/// multiplexes from that pipe, and the optional per-program file the lines also go to.
public struct LogSource: Sendable {
    /// Which of the child's standard streams the pipe is.
    public enum Stream: String, Sendable, Hashable {
        case stdout, stderr
    }

    /// The program's name in `supervisor.conf` (`[program:NAME]`) or the deployment's program.
    public var program: String
    /// The instance number among the program's processes.
    public var instance: Int
    /// The child's process id.
    public var pid: Int32
    /// Which stream this pipe carries.
    public var stream: Stream
    /// Extra string fields written after `program`, `instance`, `pid`, `stream` and before the
    /// child's own fields, in this order (e.g. `deploymentId`, `exchangeId`).
    public var fields: [(String, String)]
    /// A per-program file that receives the same merged lines as the supervisor's stdout; one file
    /// may be shared by several instances (and by both streams) of a program.
    public var file: RotatingLogFile?

    /// - Parameters:
    ///   - program: the program's name.
    ///   - instance: the instance number.
    ///   - pid: the child's process id.
    ///   - stream: which stream the pipe carries.
    ///   - fields: extra string fields, in output order.
    ///   - file: a per-program log file, if any.
    public init(
        program: String, instance: Int, pid: Int32, stream: Stream, fields: [(String, String)] = [],
        file: RotatingLogFile? = nil
    ) {
        self.program = program
        self.instance = instance
        self.pid = pid
        self.stream = stream
        self.fields = fields
        self.file = file
    }
}
