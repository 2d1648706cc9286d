//! The stock consumer: `coupon-issued` → one unit of the coupon's cached stock, taken once per
//! task → `coupon-issued-success` or `coupon-issue-failed` (`SOLD_OUT`).

use async_trait::async_trait;
use db::Tx;
use eventbus::Handler;
use events::{topics, Envelope};

use super::{CouponIssueFailed, CouponIssued, CouponIssuedSuccess, FailReason};
use crate::{
    gate::{self, Take},
    CouponError, Coupons,
};

/// Consumer group `coupon-stock`.
pub struct TakeStock {
    coupons: Coupons,
}

impl TakeStock {
    pub fn new(coupons: Coupons) -> Self {
        Self { coupons }
    }

    /// Takes stock for the task; the gate remembers the outcome per task, so a redelivery (the
    /// transaction below rolled back after the take) gets the same outcome and takes nothing.
    async fn take(&self, issued: &CouponIssued) -> anyhow::Result<Take> {
        let gate = &self.coupons.gate;
        match gate.take(issued.coupon_id, issued.task_id).await? {
            Take::Unknown => {
                match gate::rebuild(&self.coupons, issued.coupon_id).await {
                    Ok(()) => {}
                    Err(CouponError::NotFound) => {
                        anyhow::bail!("coupon {} does not exist", issued.coupon_id)
                    }
                    Err(error) => return Err(error.into()),
                }
                gate.take(issued.coupon_id, issued.task_id).await
            }
            known => Ok(known),
        }
    }
}

#[async_trait]
impl Handler for TakeStock {
    fn group(&self) -> &str {
        "coupon-stock"
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::COUPON_ISSUED.to_owned()]
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let issued: CouponIssued = event.decode()?;
        let (task_id, coupon_id, user_id) = (issued.task_id, issued.coupon_id, issued.user_id);
        let result = match self.take(&issued).await? {
            Take::Taken => Envelope::caused_by(
                &CouponIssuedSuccess {
                    task_id,
                    coupon_id,
                    user_id,
                },
                event,
            ),
            Take::SoldOut => Envelope::caused_by(
                &CouponIssueFailed {
                    task_id,
                    coupon_id,
                    user_id,
                    reason: FailReason::SoldOut,
                },
                event,
            ),
            // Its requester was told 503 and may ask again: the task takes nothing.
            Take::Withdrawn => Envelope::caused_by(
                &CouponIssueFailed {
                    task_id,
                    coupon_id,
                    user_id,
                    reason: FailReason::Internal,
                },
                event,
            ),
            Take::Unknown => {
                anyhow::bail!("coupon {coupon_id}'s gate state vanished after a rebuild")
            }
        };
        self.coupons.bus.outbox().append(tx, &[result]).await?;
        Ok(())
    }
}
