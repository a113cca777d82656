//! The README's quick start: `cargo run --example quickstart -- URL API_KEY CA`
//! against the cluster `torua dev` starts (it prints all three).

/// Writes and reads one value, as the README shows.
pub async fn run(
    url: &str,
    api_key: &str,
    ca: &str,
) -> Result<Option<torua_client::Entry>, torua_client::Error> {
    let client = torua_client::Client::builder(url)
        .token(api_key)
        .ca_file(ca)?
        .build()?;
    client.put("greeting", "hello").await?;
    let entry = client.get("greeting").await?;
    Ok(entry)
}

#[allow(dead_code)] // Included by torua's tests, which call `run` only.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, key, ca] = args.as_slice() else {
        return Err("usage: quickstart URL API_KEY CA".into());
    };
    let entry = run(url, key, ca).await?;
    println!("{:?}", entry.map(|e| e.value));
    Ok(())
}
