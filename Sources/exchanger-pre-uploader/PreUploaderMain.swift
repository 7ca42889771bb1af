import PreUploaderProcessor

/// Entry point of `exchanger-pre-uploader`; everything lives in the PreUploaderProcessor library.
@main
enum PreUploaderMain {
    static func main() async {
        await PreUploaderCommand.main(nil)
    }
}
