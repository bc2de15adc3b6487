//! The OTLP/gRPC handler: `TraceService/Export`.

use super::forward::Payload;
use super::state::{submit, Shared};
use crate::decode::{to_spans, Format};
use axum::body::Bytes;
use axum::http::HeaderValue;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::sync::Arc;

pub(super) struct Grpc {
    pub(super) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let (spans, bad) = to_spans(&req);
        match submit(&self.shared, spans, bad) {
            Ok(r) => {
                if let Some(f) = &self.shared.forward {
                    f.offer(Payload {
                        body: Bytes::from(req.encode_to_vec()),
                        content_type: HeaderValue::from_static(Format::Protobuf.content_type()),
                        gzip: false,
                    });
                }
                Ok(tonic::Response::new(r))
            }
            Err(()) => Err(tonic::Status::unavailable(
                "over capacity: the analysis queue is full; retry later",
            )),
        }
    }
}
