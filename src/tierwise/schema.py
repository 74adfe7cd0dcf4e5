"""The canonical data model (DESIGN §4): tables, their fields, types and the header synonyms ingest maps from.

Every other module names fields through this one, so a field is renamed in one place only.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

FieldKind = Literal["text", "amount", "number", "integer", "date", "timestamp", "boolean"]


@dataclass(frozen=True)
class Field:
    name: str
    kind: FieldKind
    label_zh: str
    synonyms: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class TableSpec:
    name: str
    label_zh: str
    fields: tuple[Field, ...]
    # Fields that may stand in for a required field: amount = quantity × unit_price.
    derived: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


_CUSTOMER_ID = (
    "客户编号",
    "客户id",
    "客户代码",
    "客户号",
    "会员id",
    "会员编号",
    "customerid",
    "customer_id",
    "custid",
    "cust_id",
    "customer",
    "customerno",
    "customer_no",
    "customernumber",
    "clientid",
    "client_id",
    "memberid",
    "member_id",
    "buyerid",
    "userid",
    "user_id",
)

CUSTOMERS = TableSpec(
    "customers",
    "客户",
    (
        Field("customer_id", "text", "客户编号", _CUSTOMER_ID, required=True),
        Field(
            "name",
            "text",
            "客户名称",
            (
                "客户名称",
                "客户名",
                "名称",
                "姓名",
                "公司名称",
                "企业名称",
                "name",
                "customername",
                "customer_name",
                "company",
                "companyname",
            ),
        ),
        Field(
            "type",
            "text",
            "客户类型",
            ("客户性质", "主体类型", "个人/企业", "type", "customertype", "customer_type", "entitytype"),
        ),
        Field(
            "customer_kind",
            "text",
            "客户类别",
            (
                "客户类别",
                "客户类型",
                "合作类型",
                "kind",
                "customerkind",
                "customer_kind",
                "relationship",
                "category_of_customer",
            ),
        ),
        Field("country", "text", "国家", ("国家", "国家/地区", "country", "countrycode")),
        Field("province", "text", "省份", ("省份", "省", "地区", "区域", "省/直辖市", "province", "region", "state")),
        Field("city", "text", "城市", ("城市", "市", "city", "town")),
        Field(
            "industry_code",
            "text",
            "行业",
            ("行业", "行业代码", "所属行业", "行业分类", "industry", "industrycode", "industry_code", "sector", "sic"),
        ),
        Field(
            "signup_date",
            "date",
            "注册日期",
            (
                "注册日期",
                "注册时间",
                "开户日期",
                "建档日期",
                "入会日期",
                "signupdate",
                "signup_date",
                "registered",
                "createdat",
                "created_at",
                "since",
            ),
        ),
        Field(
            "owner",
            "text",
            "客户经理",
            (
                "客户经理",
                "销售代表",
                "业务员",
                "负责人",
                "销售",
                "owner",
                "salesrep",
                "sales_rep",
                "accountmanager",
                "account_manager",
            ),
        ),
        Field("credit_limit", "amount", "信用额度", ("信用额度", "授信额度", "creditlimit", "credit_limit")),
        Field(
            "payment_terms_days",
            "integer",
            "账期天数",
            ("账期", "账期天数", "付款期限", "paymentterms", "payment_terms", "payment_terms_days", "terms"),
        ),
        Field(
            "preferred_channel",
            "text",
            "偏好渠道",
            ("偏好渠道", "沟通渠道", "联系渠道", "preferredchannel", "preferred_channel"),
        ),
        Field("phone", "text", "电话", ("电话", "手机", "手机号", "联系电话", "phone", "mobile", "tel", "telephone")),
        Field("email", "text", "邮箱", ("邮箱", "电子邮件", "电子邮箱", "email", "e-mail", "mail")),
        Field("birth_date", "date", "出生日期", ("出生日期", "生日", "birthdate", "birth_date", "dob", "birthday")),
        Field("age", "integer", "年龄", ("年龄", "age")),
        Field("gender", "text", "性别", ("性别", "gender", "sex")),
        Field("occupation", "text", "职业", ("职业", "occupation", "job")),
        Field(
            "membership_level",
            "text",
            "会员等级",
            ("会员等级", "会员级别", "等级", "membership", "membershiplevel", "membership_level", "tier"),
        ),
    ),
)

ORDERS = TableSpec(
    "orders",
    "订单",
    (
        Field(
            "order_id",
            "text",
            "订单号",
            (
                "订单号",
                "订单编号",
                "单号",
                "发票号",
                "orderid",
                "order_id",
                "orderno",
                "order_no",
                "invoiceno",
                "invoice_no",
                "invoice",
                "transactionid",
                "transaction_id",
            ),
        ),
        Field(
            "line_number",
            "text",
            "行号",
            ("行号", "明细行号", "订单行号", "行项目", "lineno", "line_no", "linenumber", "line_number", "orderline"),
        ),
        Field("customer_id", "text", "客户编号", _CUSTOMER_ID, required=True),
        Field(
            "order_date",
            "timestamp",
            "下单日期",
            (
                "下单日期",
                "订单日期",
                "下单时间",
                "交易日期",
                "交易时间",
                "购买日期",
                "成交日期",
                "日期",
                "orderdate",
                "order_date",
                "invoicedate",
                "invoice_date",
                "date",
                "transactiondate",
                "transaction_date",
                "purchasedate",
                "purchase_date",
            ),
            required=True,
        ),
        Field(
            "amount",
            "amount",
            "金额",
            (
                "金额",
                "实付金额",
                "订单金额",
                "销售额",
                "成交金额",
                "交易金额",
                "实收金额",
                "amount",
                "sales",
                "revenue",
                "total",
                "totalamount",
                "total_amount",
                "netamount",
                "net_amount",
                "dollar_value",
                "dollarvalue",
                "value",
            ),
            required=True,
        ),
        Field("cost", "amount", "成本", ("成本", "成本金额", "进价", "cost", "cogs", "costamount")),
        Field(
            "product_id",
            "text",
            "商品编码",
            (
                "商品编码",
                "商品编号",
                "产品编码",
                "产品编号",
                "物料编码",
                "货号",
                "stockcode",
                "sku",
                "productid",
                "product_id",
                "productcode",
                "itemcode",
                "item_code",
            ),
        ),
        Field(
            "product_name",
            "text",
            "商品名称",
            (
                "商品名称",
                "产品名称",
                "品名",
                "商品",
                "description",
                "productname",
                "product_name",
                "itemname",
                "item_name",
            ),
        ),
        Field("quantity", "number", "数量", ("数量", "件数", "购买数量", "quantity", "qty", "number_of_cds", "units")),
        Field("unit_price", "amount", "单价", ("单价", "价格", "unitprice", "unit_price", "price")),
        Field(
            "product_category",
            "text",
            "品类",
            ("品类", "商品类别", "产品类别", "类别", "商品分类", "category", "productcategory", "product_category"),
        ),
        Field("channel", "text", "渠道", ("渠道", "销售渠道", "下单渠道", "channel", "saleschannel", "sales_channel")),
        Field(
            "payment_method", "text", "支付方式", ("支付方式", "付款方式", "paymentmethod", "payment_method", "payment")
        ),
        Field("status", "text", "订单状态", ("订单状态", "状态", "status", "orderstatus", "order_status")),
        Field("currency", "text", "币种", ("币种", "货币", "currency")),
        Field(
            "industry_code",
            "text",
            "行业",
            ("行业", "行业代码", "所属行业", "业务行业", "industry", "industrycode", "industry_code", "sector"),
        ),
    ),
    derived={"amount": ("quantity", "unit_price")},
)

# Customer attributes an orders export often repeats on every line (Online Retail's Country): they fill the
# minimal customer records created for customers that are not in `customers` yet.
ORDER_CUSTOMER_FIELDS = ("name", "country", "province", "city", "owner")

PAYMENTS = TableSpec(
    "payments",
    "回款",
    (
        Field(
            "payment_id",
            "text",
            "回款单号",
            ("回款单号", "收款单号", "付款单号", "回款编号", "paymentid", "payment_id", "receiptno", "receipt_no"),
        ),
        Field(
            "invoice_id",
            "text",
            "发票号",
            ("发票号", "发票编号", "账单号", "invoiceid", "invoice_id", "invoiceno", "invoice_no", "billid", "bill_id"),
        ),
        Field("customer_id", "text", "客户编号", _CUSTOMER_ID, required=True),
        Field("invoice_date", "date", "开票日期", ("开票日期", "账单日期", "invoicedate", "invoice_date", "billdate")),
        Field("due_date", "date", "到期日", ("到期日", "到期日期", "应付日期", "duedate", "due_date")),
        Field(
            "paid_date",
            "date",
            "付款日期",
            ("付款日期", "回款日期", "实付日期", "paiddate", "paid_date", "paymentdate", "payment_date"),
        ),
        Field(
            "amount",
            "amount",
            "金额",
            ("金额", "发票金额", "应收金额", "amount", "invoiceamount", "invoice_amount", "total"),
            required=True,
        ),
    ),
)

INTERACTIONS = TableSpec(
    "interactions",
    "互动",
    (
        Field(
            "interaction_id",
            "text",
            "互动编号",
            ("互动编号", "记录编号", "工单号", "回访编号", "interactionid", "interaction_id", "ticketid", "ticket_id"),
        ),
        Field("customer_id", "text", "客户编号", _CUSTOMER_ID, required=True),
        Field(
            "date",
            "timestamp",
            "日期",
            ("日期", "时间", "互动日期", "回访日期", "date", "interactiondate", "interaction_date", "timestamp"),
            required=True,
        ),
        Field("kind", "text", "类型", ("类型", "互动类型", "方式", "kind", "type", "interactiontype")),
        Field(
            "satisfaction",
            "number",
            "满意度",
            ("满意度", "评分", "满意度评分", "satisfaction", "score", "rating", "csat"),
        ),
    ),
)

CAMPAIGNS = TableSpec(
    "campaign_contacts",
    "营销活动",
    (
        Field(
            "campaign_id",
            "text",
            "活动编号",
            ("活动编号", "活动id", "活动", "campaignid", "campaign_id", "campaign"),
            required=True,
        ),
        Field("customer_id", "text", "客户编号", _CUSTOMER_ID, required=True),
        Field(
            "contacted_at",
            "timestamp",
            "触达时间",
            ("触达时间", "触达日期", "发送时间", "contactedat", "contacted_at", "contactdate", "date"),
        ),
        Field("group", "text", "分组", ("分组", "组别", "group", "arm", "variant")),
        Field("responded", "boolean", "是否响应", ("是否响应", "响应", "responded", "response")),
        Field(
            "response_revenue",
            "amount",
            "响应金额",
            ("响应金额", "响应收入", "responserevenue", "response_revenue", "revenue"),
        ),
    ),
)

# Names on the command line (`tierwise ingest campaigns ...`) → table specs.
TABLES: dict[str, TableSpec] = {
    "customers": CUSTOMERS,
    "orders": ORDERS,
    "payments": PAYMENTS,
    "interactions": INTERACTIONS,
    "campaigns": CAMPAIGNS,
}


def normalise_header(text: str) -> str:
    """Header text as compared with synonyms: lower case, no spaces, dots, dashes; full-width folded."""
    folded = unicodedata.normalize("NFKC", str(text)).strip().lower()
    for ch in " \t.-_/()（）:：":
        folded = folded.replace(ch, "")
    return folded
