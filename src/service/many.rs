//! The items of one request (/predict/batch, v2 infer over HTTP or gRPC): all on one version (a
//! request never mixes versions), a few at once, answered in their order, each counted, timed and
//! recorded as a single prediction is.
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt};

use super::outcome::{ms, Outcome, PredictError};
use super::predictor::Predictor;
use super::record::Call;
use crate::domain::PredictUpload;
use crate::runtime::LoadedModel;

/// What one failed item does to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Items {
    /// Each item answers or fails on its own (/predict/batch).
    EachOwn,
    /// The first failure fails the request: the items not yet done are dropped (v2 infer).
    AllOrNothing,
}

impl Predictor {
    /// Every item that parsed runs on `model` (its own `Call` with its place); an item that did not
    /// parse keeps its error. Unless `cancelled` comes first: then nothing is answered.
    /// Each item's `timings.total` is its own time from its start.
    pub async fn predict_many<E>(
        self: Arc<Self>,
        model: &Arc<LoadedModel>,
        items: Vec<Result<PredictUpload, E>>,
        call: &Call,
        policy: Items,
        cancelled: impl Future<Output = ()>,
    ) -> Result<Vec<Result<(PredictUpload, Outcome), E>>, PredictError>
    where
        E: From<PredictError> + Send + 'static,
    {
        self.metrics.requests.predictions.fetch_add(items.len() as u64, Ordering::Relaxed);
        // Each future owns its handles: tonic's handlers must be Send for every lifetime, and
        // futures that borrow from a closure are not.
        let runs = items.into_iter().enumerate().map(|(i, item)| {
            let (service, model, call) = (self.clone(), model.clone(), Call { item: Some(i), ..call.clone() });
            async move {
                let upload = item?;
                let started = Instant::now();
                let mut outcome = service.predict_item(&model, &upload, &call).await?;
                outcome.timings.total = ms(started.elapsed());
                Ok((upload, outcome))
            }
        });
        let all = async {
            let mut answers = stream::iter(runs).buffered(self.items_in_flight);
            let mut done = Vec::new();
            while let Some(answer) = answers.next().await {
                let failed = answer.is_err();
                done.push(answer);
                if failed && policy == Items::AllOrNothing {
                    break;
                }
            }
            done
        };
        self.unless_cancelled(cancelled, all).await
    }
}
