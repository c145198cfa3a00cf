//! `revokd simulate-appwrite`: runs the simulator as a standalone server for demos.

use std::net::SocketAddr;

use anyhow::Context;

use super::Simulator;

/// A user to create at startup, with the IDs of its sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSeed {
    pub id: String,
    pub sessions: Vec<String>,
}

/// Parses `ID[:SESSION,SESSION…]`.
fn parse_user_seed(text: &str) -> Result<UserSeed, String> {
    let (id, sessions) = text.split_once(':').unwrap_or((text, ""));
    if id.is_empty() {
        return Err(format!(
            "invalid --user '{text}': expected ID[:SESSION,SESSION…] with a non-empty ID"
        ));
    }
    let sessions = sessions
        .split(',')
        .map(str::trim)
        .filter(|session| !session.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(UserSeed {
        id: id.to_owned(),
        sessions,
    })
}

/// Options of `revokd simulate-appwrite`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,

    /// Project ID that requests must send in X-Appwrite-Project.
    #[arg(long, default_value = "demo")]
    pub project: String,

    /// API key that requests must send in X-Appwrite-Key.
    #[arg(long, default_value = "demo-key")]
    pub key: String,

    /// Comma-separated scopes of the API key.
    #[arg(long, value_delimiter = ',', default_value = "users.read,users.write")]
    pub scopes: Vec<String>,

    /// User to create, as ID or ID:SESSION,SESSION,… (repeatable). The email is ID@example.com.
    #[arg(long = "user", value_name = "ID[:SESSION,...]", value_parser = parse_user_seed)]
    pub users: Vec<UserSeed>,
}

/// Runs the simulator until Ctrl-C/SIGTERM, printing the endpoint and seeded data.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let simulator = Simulator::start(args.listen)
        .await
        .with_context(|| format!("failed to start the Appwrite simulator on {}", args.listen))?;

    let scopes: Vec<&str> = args.scopes.iter().map(String::as_str).collect();
    simulator.add_project(&args.project);
    simulator.add_key(&args.project, &args.key, &scopes);
    for user in &args.users {
        simulator.add_user(&args.project, &user.id, &format!("{}@example.com", user.id));
        for session in &user.sessions {
            simulator.add_session(&args.project, &user.id, session);
        }
    }

    // The key is left out on purpose: it is a secret the caller already has.
    println!("Appwrite simulator endpoint: {}", simulator.endpoint());
    println!("project: {}", args.project);
    println!("key scopes: {}", args.scopes.join(","));
    for user in &args.users {
        println!("user {}: sessions [{}]", user.id, user.sessions.join(", "));
    }

    wait_for_shutdown_signal().await?;
    tracing::info!("shutdown signal received, stopping the Appwrite simulator");
    simulator.stop().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut terminate =
        signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("failed to listen for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("failed to listen for Ctrl-C")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{parse_user_seed, SimulateArgs};

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: SimulateArgs,
    }

    #[test]
    fn defaults_and_repeated_users() {
        let defaults = Command::parse_from(["simulate-appwrite"]).args;
        assert_eq!(defaults.listen.to_string(), "127.0.0.1:8090");
        assert_eq!(defaults.project, "demo");
        assert_eq!(defaults.key, "demo-key");
        assert_eq!(defaults.scopes, vec!["users.read", "users.write"]);
        assert!(defaults.users.is_empty());

        let args = Command::parse_from([
            "simulate-appwrite",
            "--scopes",
            "sessions.write",
            "--user",
            "alice:s1,s2",
            "--user",
            "bob",
        ])
        .args;
        assert_eq!(args.scopes, vec!["sessions.write"]);
        assert_eq!(args.users.len(), 2);
        assert_eq!(args.users[0].sessions, vec!["s1", "s2"]);
        assert_eq!(args.users[1].id, "bob");
    }

    #[test]
    fn user_seed_forms() {
        let plain = parse_user_seed("alice").unwrap();
        assert_eq!(plain.id, "alice");
        assert!(plain.sessions.is_empty());

        let with_sessions = parse_user_seed("bob:s1,s2").unwrap();
        assert_eq!(with_sessions.id, "bob");
        assert_eq!(with_sessions.sessions, vec!["s1", "s2"]);

        assert!(parse_user_seed(":s1").is_err());
    }
}
