import Supervisor

/// Entry point of `exchanger-supervisor`; everything lives in the Supervisor library.
@main
enum SupervisorMain {
    static func main() async {
        await SupervisorCommand.main(nil)
    }
}
