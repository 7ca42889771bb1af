import UploaderProcessor

/// Entry point of `exchanger-uploader`; everything lives in the UploaderProcessor library.
@main
enum UploaderMain {
    static func main() async {
        await UploaderCommand.main(nil)
    }
}
