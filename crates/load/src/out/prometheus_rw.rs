//! Prometheus remote write 1.0: a protobuf `WriteRequest`, snappy block-compressed,
//! POSTed with the spec's headers. A 5xx answer is retried once after a short pause
//! (the spec asks for retries on 5xx); any other non-2xx is a failure, not retried.

use super::Batch;

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The batch's samples as a remote write request: `__name__` first, labels sorted by
/// name.
pub fn request(b: &Batch) -> WriteRequest {
    WriteRequest {
        timeseries: b
            .samples()
            .into_iter()
            .map(|s| {
                let mut labels: Vec<Label> = std::iter::once(Label {
                    name: "__name__".into(),
                    value: s.name.into(),
                })
                .chain(s.labels.into_iter().map(|(k, v)| Label {
                    name: k.into(),
                    value: v,
                }))
                .collect();
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                TimeSeries {
                    labels,
                    samples: vec![Sample {
                        value: s.value,
                        timestamp: b.at_ms,
                    }],
                }
            })
            .collect(),
    }
}

/// The HTTP body: the encoded request, snappy block format.
pub fn body(b: &Batch) -> Result<Vec<u8>, String> {
    let bytes = prost::Message::encode_to_vec(&request(b));
    snap::raw::Encoder::new()
        .compress_vec(&bytes)
        .map_err(|e| format!("cannot snappy-compress: {e}"))
}

pub(super) async fn push(
    client: &reqwest::Client,
    url: &url::Url,
    b: &Batch,
) -> Result<(), String> {
    let headers = [
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/x-protobuf"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    super::post(client, url, &headers, body(b)?, |s| s.is_server_error())
        .await
        .map(|_| ())
}
