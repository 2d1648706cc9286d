//! What a waiting room asks of the sale it stands in front of, answered by the contexts that
//! own the sales: whether the coupon or product exists, and whether it is sold out (read from
//! the database, never from a cached copy, so a room closes as soon as its sale does).

use db::Db;
use rooms::Sale;

/// The coupons and products of this deployment, as rooms see them.
pub struct Sales {
    pub db: Db,
}

#[async_trait::async_trait]
impl rooms::Sales for Sales {
    async fn exists(&self, sale: Sale) -> anyhow::Result<bool> {
        match sale {
            Sale::Coupon(id) => match coupons::definition::find(&self.db, id).await {
                Ok(_) => Ok(true),
                Err(coupons::CouponError::NotFound) => Ok(false),
                Err(error) => Err(error.into()),
            },
            Sale::Product(id) => match catalog::product::current(&self.db, id).await {
                Ok(_) => Ok(true),
                Err(catalog::CatalogError::NotFound) => Ok(false),
                Err(error) => Err(error.into()),
            },
        }
    }

    async fn sold_out(&self, sale: Sale) -> anyhow::Result<bool> {
        Ok(match sale {
            Sale::Coupon(id) => {
                coupons::definition::find(&self.db, id)
                    .await?
                    .remaining_quantity
                    <= 0
            }
            Sale::Product(id) => catalog::product::current(&self.db, id).await?.sold_out,
        })
    }
}
