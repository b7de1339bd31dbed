//! `#[udf]`, `#[udaf]` and `#[udtf]`: write the vectorized glue between Arrow arrays and plain Rust
//! functions (null handling, variadics, manifest entries) for `eddy-udf` plugins.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, Item, ItemFn, ItemImpl,
    Lit, MetaNameValue, Pat, PathArguments, ReturnType, Signature, Token, Type, parse_macro_input,
};

/// A scalar function. On a plain function over Rust values (`fn f(a: i64, b: Option<&str>) -> String`)
/// it generates the loop over a batch: a NULL argument gives a NULL result unless the parameter is an
/// `Option`, a last parameter `Variadic<T>` takes any number of `T`. On a type implementing
/// `BatchFunction` (whole arrays in and out) the SQL types are given: `#[udf(args = ["DOUBLE"], returns =
/// "DOUBLE")]`. Options: `name` (default: the Rust name; repeat a name for overloads), `description`
/// (default: the doc comment), `deterministic` (default true), `variadic` (batch form: the last of `args`
/// repeats), `names` (batch form: the parameters' names, default `arg0`, `arg1`, ...; a first parameter
/// named `model` takes a model reference, which the server pins to a version when a query is created).
#[proc_macro_attribute]
pub fn udf(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Scalar)
}

/// A table function: like `#[udf]`, but the function returns a `Vec<T>` (or a list array, in the batch
/// form), and each element becomes an output row.
#[proc_macro_attribute]
pub fn udtf(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Table)
}

/// An aggregate function, on the `impl` block of its accumulator type, which has:
/// `fn update(&mut self, ...)` (its parameters are the function's arguments, NULL rows skipped unless
/// `Option`), `fn state(&self) -> S` and `fn merge(&mut self, state: S)` (`S` a value or a tuple of
/// values, stored as one column each), `fn result(&self) -> R`, optionally `fn retract(&mut self, ...)`
/// (same parameters as `update`; needed to aggregate tables), and optionally `fn init(...) -> Self`,
/// whose parameters are constant arguments given after the others (otherwise `Default`).
///
/// On a type implementing `Accumulator` and `Default` (whole arrays in and out) the SQL types are given:
/// `#[udaf(args = ["STRUCT<A INT>"], returns = "STRUCT<A INT>", state = ["STRUCT<A INT>"], retract = true)]`;
/// with `constants = ["INT", ...]` (constant parameters after `args`; `names` names both) the type
/// implements `FromConstants` instead of `Default`.
#[proc_macro_attribute]
pub fn udaf(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = parse_macro_input!(attr as Options);
    match parse_macro_input!(item as Item) {
        Item::Impl(item) => aggregate(options, item),
        Item::Struct(s) => {
            let (ident, attrs) = (s.ident.clone(), s.attrs.clone());
            batch_aggregate(options, quote!(#s), ident, &attrs)
        }
        other => Err(syn::Error::new_spanned(
            other,
            "#[udaf] goes on the impl block of an accumulator, or on a type implementing eddy_udf::Accumulator",
        )),
    }
    .unwrap_or_else(syn::Error::into_compile_error)
    .into()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Scalar,
    Table,
}

/// The attribute's `key = value` options.
#[derive(Default)]
struct Options {
    name: Option<String>,
    description: Option<String>,
    deterministic: Option<bool>,
    args: Option<Vec<String>>,
    /// The parameters' names (batch form).
    names: Option<Vec<String>>,
    returns: Option<String>,
    variadic: bool,
    state: Option<Vec<String>>,
    retract: bool,
    /// A batch aggregate's constant parameters' SQL types, after `args`.
    constants: Option<Vec<String>>,
}

impl syn::parse::Parse for Options {
    fn parse(input: syn::parse::ParseStream) -> syn::Result<Self> {
        let mut options = Options::default();
        for nv in Punctuated::<MetaNameValue, Token![,]>::parse_terminated(input)? {
            let key = nv
                .path
                .get_ident()
                .map(Ident::to_string)
                .unwrap_or_default();
            match key.as_str() {
                "name" => options.name = Some(string(&nv.value)?),
                "description" => options.description = Some(string(&nv.value)?),
                "returns" => options.returns = Some(string(&nv.value)?),
                "deterministic" => options.deterministic = Some(boolean(&nv.value)?),
                "variadic" => options.variadic = boolean(&nv.value)?,
                "retract" => options.retract = boolean(&nv.value)?,
                "args" => options.args = Some(strings(&nv.value)?),
                "names" => options.names = Some(strings(&nv.value)?),
                "state" => options.state = Some(strings(&nv.value)?),
                "constants" => options.constants = Some(strings(&nv.value)?),
                _ => {
                    return Err(syn::Error::new_spanned(
                        &nv.path,
                        "unknown option: expected name, description, deterministic, args, names, returns, variadic, state, retract or constants",
                    ));
                }
            }
        }
        Ok(options)
    }
}

/// A string literal (also when a `macro_rules!` fragment wraps it in an invisible group).
fn string(e: &Expr) -> syn::Result<String> {
    match e {
        Expr::Group(g) => string(&g.expr),
        Expr::Lit(l) => match &l.lit {
            Lit::Str(s) => Ok(s.value()),
            _ => Err(syn::Error::new_spanned(e, "expected a string")),
        },
        _ => Err(syn::Error::new_spanned(e, "expected a string")),
    }
}

fn strings(e: &Expr) -> syn::Result<Vec<String>> {
    match e {
        Expr::Group(g) => strings(&g.expr),
        Expr::Array(a) => a.elems.iter().map(string).collect(),
        other => Err(syn::Error::new_spanned(other, "expected [\"TYPE\", ...]")),
    }
}

fn boolean(e: &Expr) -> syn::Result<bool> {
    match e {
        Expr::Group(g) => boolean(&g.expr),
        Expr::Lit(l) => match &l.lit {
            Lit::Bool(b) => Ok(b.value),
            _ => Err(syn::Error::new_spanned(e, "expected true or false")),
        },
        _ => Err(syn::Error::new_spanned(e, "expected true or false")),
    }
}

/// The doc comment of an item, as one line.
fn doc(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => string(&nv.value).ok(),
            _ => None,
        })
        .map(|l| l.trim().to_string())
        .collect();
    lines.join(" ").trim().to_string()
}

fn expand(attr: TokenStream, item: TokenStream, kind: Kind) -> TokenStream {
    let options = parse_macro_input!(attr as Options);
    let item = parse_macro_input!(item as Item);
    match item {
        Item::Fn(f) => function(options, f, kind),
        Item::Struct(s) => {
            let (ident, attrs) = (s.ident.clone(), s.attrs.clone());
            batch_type(options, quote!(#s), ident, &attrs, kind)
        }
        Item::Enum(e) => {
            let (ident, attrs) = (e.ident.clone(), e.attrs.clone());
            batch_type(options, quote!(#e), ident, &attrs, kind)
        }
        other => Err(syn::Error::new_spanned(
            other,
            "#[udf]/#[udtf] go on a function, or on a type implementing eddy_udf::BatchFunction",
        )),
    }
    .unwrap_or_else(syn::Error::into_compile_error)
    .into()
}

/// A parameter list: fixed parameters, then perhaps a `Variadic<T>` one.
struct Params {
    fixed: Vec<(String, Type)>,
    variadic: Option<(String, Type)>,
}

impl Params {
    fn of(sig: &Signature) -> syn::Result<Params> {
        let mut fixed = Vec::new();
        let mut variadic = None;
        for input in &sig.inputs {
            let FnArg::Typed(pt) = input else { continue };
            if variadic.is_some() {
                return Err(syn::Error::new_spanned(
                    pt,
                    "a Variadic parameter must be the last",
                ));
            }
            let name = match &*pt.pat {
                Pat::Ident(i) => i.ident.to_string(),
                _ => format!("arg{}", fixed.len()),
            };
            match variadic_inner(&pt.ty) {
                Some(inner) => variadic = Some((name, inner)),
                None => fixed.push((name, (*pt.ty).clone())),
            }
        }
        Ok(Params { fixed, variadic })
    }

    /// The manifest's parameters.
    fn specs(&self, constant: bool) -> Vec<Tokens> {
        let one = |name: &str, ty: &Type, variadic: bool| {
            quote! {{
                let mut p = ::eddy_udf::Param::new(#name, <#ty as ::eddy_udf::Arg>::sql_type());
                p.nullable = <#ty as ::eddy_udf::Arg>::NULLABLE;
                p.variadic = #variadic;
                p.constant = #constant;
                p
            }}
        };
        self.fixed
            .iter()
            .map(|(n, t)| one(n, t, false))
            .chain(self.variadic.iter().map(|(n, t)| one(n, t, true)))
            .collect()
    }

    /// Code reading the parameters from `__args` (before the row loop), the code getting row `__row`'s
    /// values (running `on_null` and continuing the loop `'rows` on a NULL), and the call's arguments.
    fn bind(&self, on_null: &Tokens) -> (Tokens, Tokens, Vec<Tokens>) {
        let count = self.fixed.len();
        let variadic = self.variadic.is_some();
        let mut setup = quote!(::eddy_udf::export::check_arity(__args, #count, #variadic)?;);
        let mut gets = Tokens::new();
        let mut values = Vec::new();
        for (i, (_, ty)) in self.fixed.iter().enumerate() {
            let column = format_ident!("__c{i}");
            let value = format_ident!("__v{i}");
            setup.extend(quote!(let #column = <#ty as ::eddy_udf::Arg>::column(&__args[#i])?;));
            gets.extend(quote! {
                let Some(#value) = <#ty as ::eddy_udf::Arg>::get(&#column, __row) else {
                    #on_null
                    continue 'rows;
                };
            });
            values.push(quote!(#value));
        }
        if let Some((_, ty)) = &self.variadic {
            setup.extend(quote! {
                let __cv = __args[#count..]
                    .iter()
                    .map(|a| <#ty as ::eddy_udf::Arg>::column(a))
                    .collect::<::eddy_udf::Result<Vec<_>>>()?;
            });
            gets.extend(quote! {
                let mut __vv = Vec::with_capacity(__cv.len());
                for c in &__cv {
                    match <#ty as ::eddy_udf::Arg>::get(c, __row) {
                        Some(v) => __vv.push(v),
                        None => {
                            #on_null
                            continue 'rows;
                        }
                    }
                }
            });
            values.push(quote!(::eddy_udf::Variadic(__vv)));
        }
        (setup, gets, values)
    }
}

/// `T` if `ty` is `Variadic<T>`.
fn variadic_inner(ty: &Type) -> Option<Type> {
    let ty = match ty {
        // A type passed through a `macro_rules!` fragment arrives wrapped in an invisible group.
        Type::Group(g) => &*g.elem,
        other => other,
    };
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Variadic" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}

fn return_type(sig: &Signature) -> syn::Result<Type> {
    match &sig.output {
        ReturnType::Type(_, t) => Ok((**t).clone()),
        ReturnType::Default => Err(syn::Error::new_spanned(
            sig,
            "the function must return a value",
        )),
    }
}

/// The manifest entry's common fields.
fn spec(
    options: &Options,
    rust_name: &str,
    attrs: &[Attribute],
    kind: Tokens,
    returns: Tokens,
) -> Tokens {
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| rust_name.to_string());
    let description = options.description.clone().unwrap_or_else(|| doc(attrs));
    let deterministic = options.deterministic.unwrap_or(true);
    quote! {
        let mut spec = ::eddy_udf::manifest::FunctionSpec::new(#name, #kind, #returns);
        spec.description = #description.to_string();
        spec.deterministic = #deterministic;
    }
}

fn kind_tokens(kind: Kind) -> Tokens {
    match kind {
        Kind::Scalar => quote!(::eddy_udf::Kind::Scalar),
        Kind::Table => quote!(::eddy_udf::Kind::Table),
    }
}

/// `#[udf]`/`#[udtf]` on a function over Rust values.
fn function(options: Options, f: ItemFn, kind: Kind) -> syn::Result<Tokens> {
    if options.args.is_some() || options.returns.is_some() || options.variadic {
        return Err(syn::Error::new_spanned(
            &f.sig,
            "args, returns and variadic are for the batch form; here the Rust types say it",
        ));
    }
    let ident = &f.sig.ident;
    let params = Params::of(&f.sig)?;
    let ret = return_type(&f.sig)?;
    let (setup, gets, values) =
        params.bind(&quote!(<#ret as ::eddy_udf::Ret>::append_null(&mut __out);));
    let returns = match kind {
        Kind::Scalar => quote!(<#ret as ::eddy_udf::Ret>::sql_type()),
        Kind::Table => {
            quote!(::eddy_udf::export::element_type(&<#ret as ::eddy_udf::Ret>::sql_type()))
        }
    };
    let spec = spec(
        &options,
        &ident.to_string(),
        &f.attrs,
        kind_tokens(kind),
        returns,
    );
    let param_specs = params.specs(false);
    Ok(quote! {
        #f

        #[doc(hidden)]
        #[allow(non_snake_case, unused_imports)]
        pub(crate) mod #ident {
            use super::*;

            pub fn __eddy_udf_def() -> ::eddy_udf::FunctionDef {
                struct __Function;
                impl ::eddy_udf::BatchFunction for __Function {
                    fn create(_: &::eddy_udf::Options) -> ::eddy_udf::Result<Self> {
                        Ok(__Function)
                    }

                    fn invoke(
                        &mut self,
                        __args: &[::eddy_udf::arrow_array::ArrayRef],
                        __rows: usize,
                    ) -> ::eddy_udf::Result<::eddy_udf::arrow_array::ArrayRef> {
                        #setup
                        let mut __out = <#ret as ::eddy_udf::Ret>::builder(__rows);
                        'rows: for __row in 0..__rows {
                            #gets
                            <#ret as ::eddy_udf::Ret>::append(&mut __out, super::#ident(#(#values),*))?;
                        }
                        Ok(::eddy_udf::export::finish(__out))
                    }
                }
                #spec
                spec.params = vec![#(#param_specs),*];
                spec.returns_nullable = <#ret as ::eddy_udf::Ret>::NULLABLE;
                ::eddy_udf::FunctionDef {
                    spec,
                    create: ::eddy_udf::Create::Batch(::eddy_udf::FunctionDef::batch::<__Function>),
                }
            }
        }
    })
}

/// `#[udf]`/`#[udtf]` on a type implementing `BatchFunction`, SQL types given in the attribute.
fn batch_type(
    options: Options,
    item: Tokens,
    ident: Ident,
    attrs: &[Attribute],
    kind: Kind,
) -> syn::Result<Tokens> {
    if options.args.is_none() || options.returns.is_none() {
        return Err(syn::Error::new(
            Span::call_site(),
            "a batch function gives its SQL types: #[udf(args = [\"DOUBLE\", ...], returns = \"DOUBLE\")]",
        ));
    }
    Ok(typed_def(
        &options,
        Typed {
            item,
            attrs,
            kind: kind_tokens(kind),
            setup: quote!(),
            create: quote!(::eddy_udf::Create::Batch(::eddy_udf::FunctionDef::batch::<#ident>)),
        },
        &ident,
    ))
}

/// A type whose SQL types its attribute gives: the item, and what its definition adds.
struct Typed<'a> {
    item: Tokens,
    attrs: &'a [Attribute],
    kind: Tokens,
    /// Code before the manifest entry (`spec`) is built, which may adjust it after.
    setup: Tokens,
    create: Tokens,
}

/// The item with its `__eddy_udf_def`: parameters from `args` (the last repeats with `variadic`).
fn typed_def(options: &Options, typed: Typed, ident: &Ident) -> Tokens {
    let args = options.args.clone().unwrap_or_default();
    let returns = options.returns.clone().unwrap_or_default();
    let names = options.names.clone().unwrap_or_default();
    let mut params = batch_params(&args, &names, options.variadic);
    let constants = options.constants.clone().unwrap_or_default();
    params.extend(constants.iter().enumerate().map(|(i, t)| {
        let name = names
            .get(args.len() + i)
            .cloned()
            .unwrap_or_else(|| format!("arg{}", args.len() + i));
        quote! {{
            let mut p = ::eddy_udf::Param::new(#name, #t);
            p.constant = true;
            p
        }}
    }));
    let spec = spec(
        options,
        &ident.to_string(),
        typed.attrs,
        typed.kind,
        quote!(#returns),
    );
    let Typed {
        item,
        setup,
        create,
        ..
    } = typed;
    let state = options.state.clone().unwrap_or_default();
    let retract = options.retract;
    quote! {
        #item

        impl #ident {
            #[doc(hidden)]
            pub fn __eddy_udf_def() -> ::eddy_udf::FunctionDef {
                #setup
                #spec
                spec.params = vec![#(#params),*];
                spec.returns_nullable = true;
                spec.state = vec![#(#state.to_string()),*];
                spec.retract = #retract;
                ::eddy_udf::FunctionDef { spec, create: #create }
            }
        }
    }
}

/// The manifest's parameters of a batch function, from the SQL types (and names) in its attribute.
fn batch_params(args: &[String], names: &[String], variadic: bool) -> Vec<Tokens> {
    let last = args.len().saturating_sub(1);
    args.iter()
        .enumerate()
        .map(|(i, t)| {
            let name = names.get(i).cloned().unwrap_or_else(|| format!("arg{i}"));
            let is_variadic = variadic && i == last;
            quote! {{
                let mut p = ::eddy_udf::Param::new(#name, #t);
                p.nullable = true;
                p.variadic = #is_variadic;
                p
            }}
        })
        .collect()
}

/// `#[udaf]` on a type implementing `Accumulator` and `Default` (or `FromConstants`), SQL types given
/// in the attribute.
fn batch_aggregate(
    options: Options,
    item: Tokens,
    ident: Ident,
    attrs: &[Attribute],
) -> syn::Result<Tokens> {
    if options.args.is_none() || options.returns.is_none() || options.state.is_none() {
        return Err(syn::Error::new(
            Span::call_site(),
            "a batch aggregate gives its SQL types: #[udaf(args = [...], returns = \"...\", state = [...])]",
        ));
    }
    let (setup, create) = if options.constants.is_some() {
        (
            quote! {
                struct __Factory(Vec<::eddy_udf::arrow_array::ArrayRef>);
                impl ::eddy_udf::AccumulatorFactory for __Factory {
                    fn accumulator(&self) -> ::eddy_udf::Result<Box<dyn ::eddy_udf::Accumulator>> {
                        Ok(Box::new(<#ident as ::eddy_udf::FromConstants>::from_constants(&self.0)?))
                    }
                }
            },
            // Constants that cannot make an accumulator refuse the query when it is planned.
            quote!(::eddy_udf::Create::Aggregate(|options| {
                <#ident as ::eddy_udf::FromConstants>::from_constants(&options.constants)?;
                Ok(Box::new(__Factory(options.constants.clone())))
            })),
        )
    } else {
        (
            quote! {
                struct __Factory;
                impl ::eddy_udf::AccumulatorFactory for __Factory {
                    fn accumulator(&self) -> ::eddy_udf::Result<Box<dyn ::eddy_udf::Accumulator>> {
                        Ok(Box::new(<#ident as ::std::default::Default>::default()))
                    }
                }
            },
            quote!(::eddy_udf::Create::Aggregate(|_| Ok(Box::new(__Factory)))),
        )
    };
    Ok(typed_def(
        &options,
        Typed {
            item,
            attrs,
            kind: quote!(::eddy_udf::Kind::Aggregate),
            setup,
            create,
        },
        &ident,
    ))
}

fn method<'a>(item: &'a ItemImpl, name: &str) -> Option<&'a ImplItemFn> {
    item.items.iter().find_map(|i| match i {
        ImplItem::Fn(f) if f.sig.ident == name => Some(f),
        _ => None,
    })
}

fn required<'a>(item: &'a ItemImpl, name: &str) -> syn::Result<&'a ImplItemFn> {
    method(item, name).ok_or_else(|| {
        syn::Error::new_spanned(
            &item.self_ty,
            format!("a #[udaf] accumulator needs `fn {name}`"),
        )
    })
}

/// `#[udaf]` on an accumulator's `impl` block.
fn aggregate(options: Options, item: ItemImpl) -> syn::Result<Tokens> {
    let ty = &item.self_ty;
    let Type::Path(path) = &**ty else {
        return Err(syn::Error::new_spanned(ty, "expected a named type"));
    };
    let rust_name = path
        .path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();
    let update = Params::of(&required(&item, "update")?.sig)?;
    let ret = return_type(&required(&item, "result")?.sig)?;
    let state_ty = return_type(&required(&item, "state")?.sig)?;
    required(&item, "merge")?;
    let (state_types, tuple) = match &state_ty {
        Type::Tuple(t) => (t.elems.iter().cloned().collect::<Vec<_>>(), true),
        other => (vec![other.clone()], false),
    };
    let skip = quote!();
    let (update_setup, update_gets, update_values) = update.bind(&skip);
    let retract = method(&item, "retract").map(|_| {
        quote! {
            fn retract(&mut self, __args: &[::eddy_udf::arrow_array::ArrayRef], __rows: usize) -> ::eddy_udf::Result<()> {
                #update_setup
                let mut __failures = ::eddy_udf::export::RowFailures::default();
                'rows: for __row in 0..__rows {
                    #update_gets
                    __failures.row(|| self.0.retract(#(#update_values),*));
                }
                __failures.finish(__rows)
            }
        }
    });
    let retracts = retract.is_some();
    let init = match method(&item, "init") {
        Some(f) => {
            let params = Params::of(&f.sig)?;
            let (setup, gets, values) = params.bind(&quote!());
            let specs = params.specs(true);
            (
                quote! {
                    let __args = &self.constants[..];
                    #setup
                    #[allow(clippy::never_loop)]
                    'rows: for __row in 0..1 {
                        #gets
                        return Ok(Box::new(__Accumulator(<#ty>::init(#(#values),*))));
                    }
                    Err(::eddy_udf::Error::new("the constant arguments must not be NULL"))
                },
                specs,
            )
        }
        None => (
            quote!(Ok(Box::new(__Accumulator(<#ty as ::std::default::Default>::default())))),
            Vec::new(),
        ),
    };
    let (init_body, init_specs) = init;
    let state_params = Params {
        fixed: state_types
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("s{i}"), t.clone()))
            .collect(),
        variadic: None,
    };
    let (merge_setup, merge_gets, merge_values) = state_params.bind(&skip);
    let merge_call = if tuple {
        quote!(self.0.merge((#(#merge_values,)*)))
    } else {
        quote!(self.0.merge(#(#merge_values),*))
    };
    let state_names: Vec<Ident> = (0..state_types.len())
        .map(|i| format_ident!("__s{i}"))
        .collect();
    let state_pattern = if tuple {
        quote!((#(#state_names,)*))
    } else {
        quote!(#(#state_names)*)
    };
    let update_specs = update.specs(false);
    let spec = spec(
        &options,
        &rust_name,
        &item.attrs,
        quote!(::eddy_udf::Kind::Aggregate),
        quote!(<#ret as ::eddy_udf::Ret>::sql_type()),
    );
    Ok(quote! {
        #item

        impl #ty {
            #[doc(hidden)]
            pub fn __eddy_udf_def() -> ::eddy_udf::FunctionDef {
                struct __Factory {
                    constants: Vec<::eddy_udf::arrow_array::ArrayRef>,
                }
                struct __Accumulator(#ty);

                impl ::eddy_udf::AccumulatorFactory for __Factory {
                    fn accumulator(&self) -> ::eddy_udf::Result<Box<dyn ::eddy_udf::Accumulator>> {
                        #init_body
                    }
                }

                impl ::eddy_udf::Accumulator for __Accumulator {
                    fn update(&mut self, __args: &[::eddy_udf::arrow_array::ArrayRef], __rows: usize) -> ::eddy_udf::Result<()> {
                        #update_setup
                        let mut __failures = ::eddy_udf::export::RowFailures::default();
                        'rows: for __row in 0..__rows {
                            #update_gets
                            __failures.row(|| self.0.update(#(#update_values),*));
                        }
                        __failures.finish(__rows)
                    }

                    #retract

                    fn merge(&mut self, __args: &[::eddy_udf::arrow_array::ArrayRef], __rows: usize) -> ::eddy_udf::Result<()> {
                        #merge_setup
                        'rows: for __row in 0..__rows {
                            #merge_gets
                            #merge_call;
                        }
                        Ok(())
                    }

                    fn state(&self) -> ::eddy_udf::Result<Vec<::eddy_udf::arrow_array::ArrayRef>> {
                        let #state_pattern = self.0.state();
                        Ok(vec![#({
                            let mut b = <#state_types as ::eddy_udf::Ret>::builder(1);
                            <#state_types as ::eddy_udf::Ret>::append(&mut b, #state_names)?;
                            ::eddy_udf::export::finish(b)
                        }),*])
                    }

                    fn evaluate(&self) -> ::eddy_udf::Result<::eddy_udf::arrow_array::ArrayRef> {
                        let mut b = <#ret as ::eddy_udf::Ret>::builder(1);
                        <#ret as ::eddy_udf::Ret>::append(&mut b, self.0.result())?;
                        Ok(::eddy_udf::export::finish(b))
                    }
                }

                #spec
                spec.params = vec![#(#update_specs,)* #(#init_specs),*];
                spec.returns_nullable = <#ret as ::eddy_udf::Ret>::NULLABLE;
                spec.state = vec![#(<#state_types as ::eddy_udf::Ret>::sql_type()),*];
                spec.retract = #retracts;
                ::eddy_udf::FunctionDef {
                    spec,
                    create: ::eddy_udf::Create::Aggregate(|options| {
                        Ok(Box::new(__Factory { constants: options.constants.clone() }))
                    }),
                }
            }
        }
    })
}
