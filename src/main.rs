use clap::Parser;
use food_api::config::Config;
use food_api::startup::Application;
use food_api::telemetry::init_subscriber;

#[actix_web::main]
async fn main() {
    let config = Config::parse();
    init_subscriber(config.log_format);
    tracing::info!(?config, "starting");
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            // One line that names the cause and the fix; no backtrace.
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    if let Err(e) = app.run_until_stopped().await {
        eprintln!("error: server stopped: {e}");
        std::process::exit(1);
    }
}
