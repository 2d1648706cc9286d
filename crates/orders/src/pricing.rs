//! Pricing an order once its stock is reserved and its coupon applied.

use events::order::{CouponDiscount, DiscountKind, ReservedLine};

/// An order's amounts (`docs/api.md`: `totalAmount = max(0, original − discount)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    pub original: i64,
    pub discount: i64,
    pub total: i64,
}

/// The amounts of `lines` with `discount`: `FIXED` takes its value off, `PERCENT` its share of
/// the original amount rounded down; the total never goes below 0.
pub fn price(lines: &[ReservedLine], discount: Option<&CouponDiscount>) -> Amounts {
    let original = lines.iter().fold(0i64, |sum, line| {
        sum.saturating_add(line.unit_price.saturating_mul(line.quantity))
    });
    let discount = match discount {
        None => 0,
        Some(d) => match d.discount_type {
            DiscountKind::Percent => {
                (i128::from(original) * i128::from(d.discount_value.clamp(0, 100)) / 100) as i64
            }
            DiscountKind::Fixed => d.discount_value.max(0),
        },
    };
    Amounts {
        original,
        discount,
        total: (original - discount).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(unit_price: i64, quantity: i64) -> ReservedLine {
        ReservedLine {
            product_option_id: 1,
            product_id: 1,
            product_name: "p".into(),
            option_name: "o".into(),
            unit_price,
            quantity,
        }
    }

    fn coupon(kind: DiscountKind, value: i64) -> CouponDiscount {
        CouponDiscount {
            discount_type: kind,
            discount_value: value,
        }
    }

    fn amounts(original: i64, discount: i64, total: i64) -> Amounts {
        Amounts {
            original,
            discount,
            total,
        }
    }

    #[test]
    fn without_a_coupon_the_total_is_the_sum_of_the_lines() {
        let lines = [line(1000, 3), line(2500, 2)];
        assert_eq!(price(&lines, None), amounts(8000, 0, 8000));
    }

    #[test]
    fn a_fixed_coupon_takes_its_value_off_and_never_below_zero() {
        assert_eq!(
            price(&[line(9000, 1)], Some(&coupon(DiscountKind::Fixed, 3000))),
            amounts(9000, 3000, 6000)
        );
        assert_eq!(
            price(&[line(2000, 1)], Some(&coupon(DiscountKind::Fixed, 5000))),
            amounts(2000, 5000, 0)
        );
    }

    #[test]
    fn a_percent_coupon_rounds_its_discount_down() {
        // 15% of 9,999 is 1,499.85.
        assert_eq!(
            price(&[line(9999, 1)], Some(&coupon(DiscountKind::Percent, 15))),
            amounts(9999, 1499, 8500)
        );
        assert_eq!(
            price(&[line(700, 3)], Some(&coupon(DiscountKind::Percent, 100))),
            amounts(2100, 2100, 0)
        );
    }
}
